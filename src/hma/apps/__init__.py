"""hma.apps: the world model put to work: policy evaluation, synthetic data, behaviour cloning.

Library entry points: :func:`evaluate_policies` (``hma policy-eval``), :func:`synthesize`
(``hma synth``) and :func:`train_bc`; the paper's experiments built on them live in
:mod:`hma.experiments`.
"""

from hma.apps.bc import train_bc
from hma.apps.policy_eval import evaluate_policies
from hma.apps.synth import synthesize

__all__ = ["evaluate_policies", "synthesize", "train_bc"]
