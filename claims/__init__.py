"""The claims of Liu, Zhu & Belkin (NeurIPS 2020), one module per section or figure of the paper."""
