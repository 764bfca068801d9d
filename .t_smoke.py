import sys; sys.path.insert(0, "/tmp/wt-a/tests")
import torch
from toy_spinful import ToySpinful
from qcsurrogate.surrogate import PARC, PlainCNN, Normalization, parse_model_config, build_surrogate
sysm = ToySpinful(L=5)
st = sysm.initial_state("random_start", n_traj=3)
der = sysm.rhs(st); nxt = st.axpy(0.05, der)
norm = Normalization.fit(sysm.graph, st, der, nxt - st)
print(norm.inputs.keys())
for kind in ("parc", "cnn"):
  for opts in ({}, {"complex_mode": "split", "bilinear_inputs": True, "integrator_inputs": "state", "linear_skip": True, "init": "lstsq"},
               {"integrator_inputs": "block", "project_rho": "spectrum", "conserve_energy": True}):
    m = build_surrogate(kind, sysm, parse_model_config({"name": kind, "width": 8, **opts}), norm)
    print(kind, opts, m.initialize_from_data(st, der, nxt))
    p, aux = m.predict(m.prepare(st))
    l, parts = m.loss(m.prepare(st), m.prepare(der), m.prepare(nxt))
    m.eval(); r = m.rollout(st, 4)
    print(p.rho.shape, float(l), r.rho.shape, m.spec().get("orbitals"))
