print("ScanBench: not built yet")
