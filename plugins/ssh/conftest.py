# Makes `import qcsurrogate_ssh_chain` work when the tests run from a source checkout without installing
# the package: pytest puts the directory of this (rootdir-level) conftest.py on sys.path. Not installed,
# the plugin has no entry point, so it is registered in-process under the entry point's name, as the
# registry would through the entry point (SSHChain's graph names the plugin's 'ssh_ring_bond_matrix' view).
from qcsurrogate_ssh_chain import plugin

import qcsurrogate

if "ssh_chain" not in qcsurrogate.list_plugins():
    qcsurrogate.register_plugin(plugin, name="ssh_chain")
