import fakecupy
fakecupy.install()
