"""The ``minicelery`` command line (the only module that imports click)."""
