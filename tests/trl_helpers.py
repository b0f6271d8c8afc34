"""Shared builders for the TRL backend tests: a tiny random model on arith prompts, offline."""


from cures.backends.trl.config import CuresGRPOConfig
from cures.backends.trl.data import builtin_source, to_prompts
from cures.backends.trl.models import tiny_model, tiny_tokenizer
from cures.backends.trl.rewards import parity_reward  # a reward that varies across a random model's completions
from cures.backends.trl.trainer import CuresGRPOTrainer


def arith_prompts(n=48):
    return to_prompts(builtin_source("arith", n, 0)["train"], "arith", prompt_suffix="")


def make_trainer(policy_name, rollouts_per_step, prompts_per_step, steps, tmp_path, seed=0, micro_batch=None,
                 eval_dataset=None, policy_params=None, **config):
    tok = tiny_tokenizer()
    args = CuresGRPOConfig(output_dir=str(tmp_path), policy=policy_name, policy_params=policy_params or {},
                           prompts_per_step=prompts_per_step, rollouts_per_step=rollouts_per_step,
                           per_device_train_batch_size=micro_batch or rollouts_per_step, max_completion_length=6,
                           gradient_checkpointing=False, logging_steps=1, max_steps=steps, learning_rate=1e-3,
                           seed=seed, **{"save_strategy": "no", **config})
    model = tiny_model(tok, seed).eval()  # as from_pretrained leaves it: the first step must still be the policy's
    trainer = CuresGRPOTrainer(model=model, processing_class=tok, reward_funcs=parity_reward,
                               args=args, train_dataset=arith_prompts(), eval_dataset=eval_dataset)
    return trainer, trainer.policy, trainer.policy_state


def record_plans(policy):
    """Every plan the policy makes from now on, in order."""
    plans = []
    original = policy.plan
    policy.plan = lambda s: plans.append(original(s)) or plans[-1]
    return plans
