import warnings, sys
sys.path.insert(0, "/tmp/wt-a/tests")
from toy_spinful import ToySpinful, ToySpinfulVector
from qcsurrogate.testing import check_system
for cls in (ToySpinful, ToySpinfulVector):
    for b in ("periodic", "open"):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            print(cls.__name__, b, check_system(cls(boundary=b)), [str(x.message)[:200] for x in w])
