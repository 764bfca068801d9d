# Makes `import qcsurrogate_ssh` work when the tests run from a source checkout without installing
# the package: pytest puts the directory of this (rootdir-level) conftest.py on sys.path.
