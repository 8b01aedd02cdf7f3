"""hma.apps: the world model put to work: policy evaluation, synthetic data, behaviour cloning.

Library entry points: :func:`evaluate_policies` (``hma policy-eval``), :func:`synthesize`
(``hma synth``) and :func:`run_synth_bc` (the synthetic-data experiment).
"""

from hma.apps.bc import run_synth_bc, train_bc
from hma.apps.policy_eval import evaluate_policies
from hma.apps.synth import synthesize

__all__ = ["evaluate_policies", "run_synth_bc", "synthesize", "train_bc"]
