"""Time filtered evaluation and a training epoch on MKG-W against bare references measured in the same run.

- Evaluation: ranking all 8,548 test queries (tail and reciprocal head) at rank 128, against the bare scoring
  matrix product of the same query embeddings with the entity table, in the same query batches.
- Training: one Trainer epoch at rank 128, against a bare loop of the same shapes (shuffle, ComplEx scores,
  cross-entropy + N3, backward, Adagrad step) written with plain tensors.

Each timing is the best of ``--repeats`` runs, the two sides interleaved so that load on the machine hits both.

    python benchmarks/speed.py --data-dir ../shared/datasets
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys

import torch
from torch.nn import functional as F

from agents.cli import add_data_dir
from dsom_env.cache import atomic_write_text
from dsom_env.data import KGDataset, load_dataset
from students.evaluate import MAX_SCORES, rank_queries
from students.train import TrainConfig, Trainer, build_student
from timing import best_times


def evaluation_timings(dataset: KGDataset, rank: int, repeats: int) -> dict[str, float]:
    model = build_student(dataset, TrainConfig(rank=rank)).eval()
    queries = dataset.queries("test")
    batch_size = MAX_SCORES // dataset.num_entities  # the batching rank_queries uses
    with torch.inference_mode():
        query_embeddings = model.query(queries[:, 0], queries[:, 1])
        entities = model.entity.weight

        def bare_product() -> None:
            for batch in query_embeddings.split(batch_size):
                batch @ entities.t()

        times = best_times({"filtered_ranking": lambda: rank_queries(model, dataset, queries),
                            "bare_product": bare_product}, repeats)
    return {"queries": len(queries), **times, "ratio": times["filtered_ranking"] / times["bare_product"]}


def training_timings(dataset: KGDataset, rank: int, repeats: int) -> dict[str, float]:
    config = TrainConfig(rank=rank)
    trainer = Trainer(build_student(dataset, config), dataset, config, progress=False)

    torch.manual_seed(0)
    entity = (torch.randn(dataset.num_entities, 2 * rank) * 1e-3).requires_grad_()
    relation = (torch.randn(dataset.num_query_relations, 2 * rank) * 1e-3).requires_grad_()
    optimizer = torch.optim.Adagrad([entity, relation], lr=config.learning_rate)
    queries = dataset.queries("train")

    def bare_epoch() -> None:
        for index in torch.randperm(len(queries)).split(config.batch_size):
            batch = queries[index]
            head_re, head_im = entity[batch[:, 0]].chunk(2, dim=1)
            rel_re, rel_im = relation[batch[:, 1]].chunk(2, dim=1)
            tail_re, tail_im = entity[batch[:, 2]].chunk(2, dim=1)
            query = torch.cat([head_re * rel_re - head_im * rel_im, head_re * rel_im + head_im * rel_re], dim=1)
            n3 = sum(torch.sqrt(re**2 + im**2).pow(3).sum()
                     for re, im in ((head_re, head_im), (rel_re, rel_im), (tail_re, tail_im))) / len(batch)
            loss = F.cross_entropy(query @ entity.t(), batch[:, 2]) + config.n3_weight * n3
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    times = best_times({"trainer_epoch": trainer.train_epoch, "bare_epoch": bare_epoch}, repeats)
    return {"batches": -(-len(queries) // config.batch_size), **times,
            "ratio": times["trainer_epoch"] / times["bare_epoch"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_dir(parser)
    parser.add_argument("--rank", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="benchmarks/results/speed.json")
    args = parser.parse_args()

    dataset = load_dataset("MKG-W", args.data_dir)
    evaluation = evaluation_timings(dataset, args.rank, args.repeats)
    print(f"evaluation of {evaluation['queries']} test queries at rank {args.rank}: "
          f"{evaluation['filtered_ranking']:.3f}s, bare product {evaluation['bare_product']:.3f}s, "
          f"ratio {evaluation['ratio']:.2f} (target <= 1.5, and < 2 s)")
    training = training_timings(dataset, args.rank, max(1, args.repeats - 1))
    print(f"training epoch at rank {args.rank}: trainer {training['trainer_epoch']:.2f}s, "
          f"bare loop {training['bare_epoch']:.2f}s, ratio {training['ratio']:.2f} (target <= 1.3)")
    report = {
        "command": shlex.join(["python", *sys.argv]),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "rank": args.rank,
        "evaluation": evaluation,
        "training": training,
    }
    atomic_write_text(json.dumps(report, indent=2) + "\n", args.output)


if __name__ == "__main__":
    main()
