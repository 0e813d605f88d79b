import MetergwCLI

Metergw.runMain()
