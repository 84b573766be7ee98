"""Development tools, apart from the core: the synthetic dataset generator with planted errors, the
deterministic training loops of the shipped models, the validation of findings on planted errors, and the
embedded demo. May import anything of the core; the core never imports these (except the demo command).
"""
