print("siprec-edge: not built yet")
