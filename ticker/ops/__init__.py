"""Operations: metrics, health and readiness, the operations view's registry, and logging.

``metrics`` and ``logs`` are instrumentation every side imports; ``health``, ``registry`` and ``views`` read the
processes' state through those figures and narrow calls.
"""
