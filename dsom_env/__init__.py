"""DSoM-Gym environments: ``import dsom_env`` registers them with Gymnasium.

    import gymnasium as gym, dsom_env
    env = gym.make("DSoM-Synthetic-v0")          # no data needed: planted synthetic KG, teachers trained in seconds
    env = gym.make("DSoM-MKGW-v0", batch_size=128)
"""

from gymnasium.envs.registration import register

from students.distill import DistillConfig
from students.train import TrainConfig

ENTRY_POINT = "dsom_env.env:TeacherCombinationEnv"
# The student of the benchmark envs: the plain ComplEx configuration tuned on MKG-W valid (TrainConfig's defaults,
# benchmarks/results/complex_mkgw.json) and the distillation weight chosen on MKG-W valid, DistillConfig's default
# (`benchmarks/distill_benchmark.py --grid`, see the README's Results).
BENCHMARK_STUDENT = {"student_rank": TrainConfig.rank, "batch_size": TrainConfig.batch_size,
                     "n3_weight": TrainConfig.n3_weight, "learning_rate": TrainConfig.learning_rate,
                     "gamma": DistillConfig.gamma}

register(id="DSoM-Synthetic-v0", entry_point=ENTRY_POINT, kwargs={"dataset": "synthetic"})
for env_id, dataset in (("DSoM-MKGW-v0", "MKG-W"), ("DSoM-MKGY-v0", "MKG-Y"), ("DSoM-DB15K-v0", "DB15K"),
                        ("DSoM-FB15K237-v0", "FB15K-237"), ("DSoM-WN18-v0", "WN18")):
    register(id=env_id, entry_point=ENTRY_POINT, kwargs={"dataset": dataset, **BENCHMARK_STUDENT})
