# Makes `import qcsurrogate_sd_chain` work when the tests run from a source checkout without installing
# the package: pytest puts the directory of this (rootdir-level) conftest.py on sys.path. Not installed,
# the plugin has no entry point, so it is registered in-process under the entry point's name, as the
# registry would through the entry point (SDChain's graph names the plugin's spin-density views).
from qcsurrogate_sd_chain import plugin

import qcsurrogate

if "sd_chain" not in qcsurrogate.list_plugins():
    qcsurrogate.register_plugin(plugin, name="sd_chain")
