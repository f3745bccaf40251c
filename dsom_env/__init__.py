"""DSoM-Gym environments: ``import dsom_env`` registers them with Gymnasium.

    import gymnasium as gym, dsom_env
    env = gym.make("DSoM-Synthetic-v0")          # no data needed: planted synthetic KG, teachers trained in seconds
    env = gym.make("DSoM-MKGW-v0", batch_size=128)
"""

from gymnasium.envs.registration import register

register(id="DSoM-Synthetic-v0", entry_point="dsom_env.env:TeacherCombinationEnv", kwargs={"dataset": "synthetic"})
for env_id, dataset in (("DSoM-MKGW-v0", "MKG-W"), ("DSoM-MKGY-v0", "MKG-Y"), ("DSoM-DB15K-v0", "DB15K"),
                        ("DSoM-FB15K237-v0", "FB15K-237"), ("DSoM-WN18-v0", "WN18")):
    register(id=env_id, entry_point="dsom_env.env:benchmark_env", kwargs={"dataset": dataset})
