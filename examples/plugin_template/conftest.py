# Makes `import qcsurrogate_ssh` work when the tests run from a source checkout without installing
# the package: pytest puts the directory of this (rootdir-level) conftest.py on sys.path. Not
# installed, the plugin has no entry point, so it is registered in-process, as the registry would
# through the entry point (SSHChain's graph names the plugin's 'bond_matrix' view).
from qcsurrogate_ssh import plugin

import qcsurrogate

if "ssh" not in qcsurrogate.list_plugins():
    qcsurrogate.register_plugin(plugin, name="ssh")
