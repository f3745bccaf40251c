"""TeacherCombinationEnv: choosing, per training query, which frozen teachers a ComplEx student distils from."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch.nn import functional as F

from dsom_env.credits import subset_credits
from dsom_env.heldout import CALIBRATED_LOSSES, HELDOUT_LOSSES, calibration_factor, heldout_loss
from dsom_env.influence import dot, influence_direction
from dsom_env.data import SYNTHETIC, KGDataset, dataset_by_name
from dsom_env.teachers import TeacherPool, missing_teachers
from students.distill import DistillConfig, row_dot, distillation_loss
from students.evaluate import evaluate
from students.train import OPTIMIZERS, TrainConfig, build_student, step_scale

REWARD_MODES = ("improvement", "beneficial", "heldout", "credit")
CREDIT_DIRECTIONS = ("step", "influence")
EMBEDDING_FEATURES = 8  # random unit directions each embedding is projected on


class TeacherCombinationEnv(gym.Env):
    """The teacher choice of DSoM as an environment: the ComplEx student trains inside ``step``.

    Each step shows a batch of B training queries (h, r, t) (reciprocal relations make every triple two queries);
    the agent picks for each query the subset of the K frozen teachers whose combined soft label the student distils
    from, and the student takes one optimiser step on ``CE + gamma * tau^2 * neighbour-decoupled KD``.

    ## Observation
    ``Box(B * F)`` float32, every feature in [-1, 1]: a [B, F] matrix flattened row by row (one row per query;
    SB3's policies take flat vectors, and ``obs.reshape(B, F)`` gives the rows back). For the student and then each
    teacher (at temperature 1): probability of the true tail, ``log(rank) / log(E)`` of the true tail (unfiltered,
    realistic), entropy / ``log(E)``, probability mass on the head's training-graph neighbours. Then for each
    teacher ``1 - exp(-KL)`` of teacher to student, at temperature 1. Then the student's head and relation
    embeddings, normalised and projected on ``EMBEDDING_FEATURES`` fixed random unit directions each.
    F = 4 (K + 1) + K + 2 * 8.

    ## Action
    ``MultiBinary(B * K)``: entry ``b * K + k`` is 1 when query b listens to teacher k (a [B, K] array is accepted
    too). An all-zero row means that query learns from its hard label alone.

    ## Reward
    Per query, from the student's hard-label cross-entropy:
    - ``improvement``: its drop on the step's own queries, before minus after the optimiser step;
    - ``beneficial``: that drop minus a running mean of drops, counted only where positive;
    - ``heldout``: the drop of the mean cross-entropy on a fresh held-out batch, shared by all queries;
    - ``credit`` (default): each query's own share of that drop, to first order,
      ``(c * grad(L_heldout)) . grad(KD_b) / B``: the alignment of its distillation gradient with the held-out
      gradient (as in learning to reweight examples, Ren et al., 2018), measured along the step the optimiser takes,
      whose factor c per coordinate is ``students.train.step_scale`` (Adagrad: lr over the root of its accumulated
      squared gradients). 0 for a query without teachers, negative for a choice that hurts.
    ``heldout_loss`` chooses what the held-out batch measures (``dsom_env.heldout``): its cross-entropy, the
    cross-entropy after temperature scaling, that of the true tail among its highest-scoring rivals, or its smooth
    reciprocal rank among them.
    ``credit_midpoint`` takes the held-out gradient at the middle of the step, ``theta + step / 2``, instead of at its
    start: for a quadratic loss ``L(theta + step) - L(theta) = step . grad L(theta + step / 2)`` exactly, so the
    queries' shares then add up to the realised change up to third-order terms, the curvature along the whole step
    included. A first-order credit overrates a choice whose large step is only loosely aligned with the held-out
    gradient: on MKG-W it rated the text teacher alone 2.2 times as high as all three teachers for a trained student,
    while the step it takes lowered the held-out cross-entropy no more than all three's did.
    ``credit_direction="influence"`` prices each query's term over the rest of training instead of the next step:
    the same share along ``(H + lambda I)^-1 grad(L)``, the held-out gradient through the damped inverse curvature of
    the training loss (``dsom_env.influence``), which weighs most the directions training barely constrains, where a
    student drifts once a teacher stops holding it. The one-step credit of a teacher whose soft labels the student has
    already learnt is near 0, however much dropping it would cost over the following epochs.
    Held-out batches come from ``heldout_split``: ``valid`` (default) or ``train`` (other training queries). The
    teachers have fitted the training queries, so on ``train`` a teacher that memorised them looks helpful
    everywhere; ``valid`` measures what transfers, at the price of the valid split also steering training (test
    stays unseen). The defaults are what ``benchmarks/agents_synthetic.py`` shows working best (3 seeds): REINFORCE's
    students reach test MRR 23.28 +- 0.39 with them (comparing each query's credit with ``teacher_credits``), its
    most likely choices matching the planted best teachers on 97% of queries, and 9.78 +- 1.00 with
    ``improvement``, which draws every agent onto the structure teacher that has memorised the training queries (all
    teachers 14.39, random 14.71). On MKG-W the credit of a plain gradient step, without the optimiser's scale,
    favoured the weak text teacher, whose soft labels lower valid MRR (``benchmarks/reward_alignment.py``; README,
    Results).
    The step's reward is the mean over queries; ``info["query_rewards"]`` holds the per-query values.

    ## Episode
    Starts with a fresh student (``reset(seed=s)`` rebuilds it and the query order deterministically; ``reset()``
    without a seed keeps training the same student on a new pass). One pass over the training queries in full
    batches (the fewer than B left over wait for the next pass's shuffle), after which the episode is truncated.

    ## Info
    ``query_rewards`` [B], ``selection`` [B, K] (0/1 as applied), ``relations`` [B] (each query's relation id,
    reciprocals folded onto their originals), ``selection_rate`` (teacher name -> fraction of queries),
    ``student_loss``; with ``teacher_credits``, ``subset_credits`` [B, 2**K] (the ``credit`` each query would have
    earned from each teacher subset, on the same held-out batch and step; column s is the subset whose bits s sets,
    ``dsom_env.credits``) and ``teacher_credits`` [B, K] (its columns of each teacher alone): counterfactuals for
    per-query agents; and
    every ``eval_every`` steps ``valid_metrics`` (MRR and Hits@k in percent) and
    ``valid_mrr``. :attr:`best_student_state` holds the weights of the best valid MRR so far.

    ## Arguments
    :param dataset: a benchmark name (``MKG-W``, ...), ``"synthetic"`` (planted KG with two views) or a KGDataset.
    :param teachers: teacher names (default: the dataset's whole zoo, trained and cached on first use). A benchmark
        without some modality's features gets the teachers that exist; :attr:`missing_teachers` names the others
        and why, and the env prints them when built with ``progress``.
    :param teacher_pool: ready teachers to use instead (then ``teachers`` must be None).
    :param tabulate_teachers: compute the teachers' logits for every training query once, at construction, instead
        of at every step (``TeacherPool.tabulate``): on CPU, a distillation step about twice as fast (MKG-W:
        0.95 s instead of 2.16 s, ``benchmarks/step_costs.py``) for K x Q x E floats of memory
        (MKG-W's zoo: 6.6 GB; skipped with a warning when memory is short). Turn it off for many vector-env workers
        on one machine.
    :param batch_size: queries per step.
    :param student_rank, learning_rate, optimizer, n3_weight: the student's configuration.
    :param tau, alpha, beta, gamma: distillation weights (see ``students.distill``).
    :param reward_mode: one of ``REWARD_MODES``.
    :param heldout_split: where held-out batches of the ``heldout`` and ``credit`` rewards come from.
    :param heldout_size: queries per held-out batch (default: ``batch_size``); larger batches make the rewards less
        noisy at the cost of one student forward and backward over them per step.
    :param heldout_loss: what the ``credit`` reward's held-out batch measures (``dsom_env.heldout``): its
        ``cross-entropy``; ``calibrated``, the cross-entropy after temperature scaling, which a choice cannot lower
        by merely making the student less confident; ``top``, the cross-entropy of the true tail among its
        highest-scoring rivals only; or ``reciprocal-rank``, minus a smooth reciprocal rank among them (MRR made
        differentiable, at the calibrated temperature).
    :param teacher_credits: with the ``credit`` reward, also report ``info["subset_credits"]`` and
        ``info["teacher_credits"]`` (in closed form: one softmax and one dot product per teacher and step).
    :param credit_midpoint: with the ``credit`` reward, take the held-out gradient at the middle of the student's
        step (second-order accurate; costs a copy of the weights).
    :param credit_direction: with the ``credit`` reward, ``step`` (the optimiser's next step) or ``influence`` (the
        long-run direction above; a plain ComplEx student, without ``credit_midpoint``). On MKG-W with the text
        teacher alone, REINFORCE's drift onto text came later along it and came all the same; with the exact
        expected-credit gradient text stayed at 19% to 38% of the queries over three passes (README, Results).
    :param influence_damping: lambda of the influence direction as a multiple of the curvature along grad(L): large
        values tend to the plain held-out gradient, small ones to the full inverse.
    :param influence_every: steps between solves of the influence direction (``influence_iterations`` forward and
        backward passes over ``batch_size`` training queries each). A direction kept for several steps goes stale
        while the student moves fast: on the planted KG, kept for 10 steps from a fresh student, it rated the
        planted helpful teachers no better than the misleading ones over the first 20 steps.
    :param influence_iterations: conjugate-gradient steps per solve (on MKG-W, at damping 1, 5 left a residual of
        0.7% of the held-out gradient, 10 of 0.002%).
    :param eval_every: steps between valid evaluations (0: never).
    :param data_dir, cache_dir: where the data is and where features and teachers are cached.
    :param synthetic_seed: seed of the synthetic KG.
    :param device: ``cpu`` or ``cuda``.
    :param num_threads: torch threads of this process (for vector-env workers); None leaves the setting alone.
    :param progress: progress bars while teachers are built.

    Under a vector env each worker builds its env from these arguments alone and loads the cached teachers itself;
    train them first (``dsom teachers train`` or one ``gym.make``) so that workers do not all train them.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        dataset: str | KGDataset = SYNTHETIC,
        teachers: Sequence[str] | None = None,
        teacher_pool: TeacherPool | None = None,
        tabulate_teachers: bool = True,
        batch_size: int = 256,
        student_rank: int = 32,
        learning_rate: float = 0.1,
        optimizer: str = "adagrad",
        n3_weight: float = 0.01,
        tau: float = 2.0,
        alpha: float = 1.0,
        beta: float = 1.0,
        gamma: float = 1.0,
        reward_mode: str = "credit",
        heldout_split: str = "valid",
        heldout_size: int | None = None,
        heldout_loss: str = "cross-entropy",
        teacher_credits: bool = False,
        credit_midpoint: bool = False,
        credit_direction: str = "step",
        influence_damping: float = 1.0,
        influence_every: int = 1,
        influence_iterations: int = 10,
        eval_every: int = 0,
        data_dir: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        synthetic_seed: int = 0,
        device: str = "cpu",
        num_threads: int | None = None,
        progress: bool = True,
    ) -> None:
        if num_threads is not None:
            torch.set_num_threads(num_threads)  # one vector-env worker per core, say
        if reward_mode not in REWARD_MODES:
            raise ValueError(f"unknown reward_mode {reward_mode!r}; known: {', '.join(REWARD_MODES)}")
        if teacher_credits and reward_mode != "credit":
            raise ValueError(f"teacher_credits needs reward_mode='credit', got {reward_mode!r}")
        if heldout_loss not in HELDOUT_LOSSES:
            raise ValueError(f"unknown heldout_loss {heldout_loss!r}; known: {', '.join(HELDOUT_LOSSES)}")
        if heldout_loss != "cross-entropy" and reward_mode != "credit":
            raise ValueError(f"heldout_loss={heldout_loss!r} needs reward_mode='credit', got {reward_mode!r}")
        if credit_midpoint and reward_mode != "credit":
            raise ValueError(f"credit_midpoint needs reward_mode='credit', got {reward_mode!r}")
        if credit_direction not in CREDIT_DIRECTIONS:
            raise ValueError(f"unknown credit_direction {credit_direction!r}; known: {', '.join(CREDIT_DIRECTIONS)}")
        if credit_direction != "step" and (reward_mode != "credit" or credit_midpoint):
            raise ValueError(f"credit_direction={credit_direction!r} needs reward_mode='credit' without "
                             f"credit_midpoint, got reward_mode={reward_mode!r}, credit_midpoint={credit_midpoint}")
        if influence_damping <= 0 or influence_every < 1 or influence_iterations < 1:
            raise ValueError(f"influence_damping must be positive, influence_every and influence_iterations at least "
                             f"1, got {influence_damping}, {influence_every} and {influence_iterations}")
        if heldout_split not in ("train", "valid"):
            raise ValueError(f"heldout_split must be 'train' or 'valid', got {heldout_split!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.dataset = dataset if isinstance(dataset, KGDataset) else dataset_by_name(dataset, data_dir, synthetic_seed)
        self.device = torch.device(device)
        if teacher_pool is not None and teachers is not None:
            raise ValueError("give teachers (names) or teacher_pool, not both")
        self.pool = teacher_pool or TeacherPool.from_cache(
            self.dataset, None if teachers is None else list(teachers), data_dir, cache_dir, self.device,
            progress=progress)
        self.teacher_names = self.pool.names
        self.missing_teachers = {} if teacher_pool is not None else missing_teachers(self.dataset, data_dir)
        if self.missing_teachers and progress:
            print(f"{self.dataset.name}: teachers {', '.join(self.teacher_names)}; without " + "; ".join(
                f"{name} ({reason})" for name, reason in self.missing_teachers.items()))
        self.batch_size, self.reward_mode, self.eval_every = batch_size, reward_mode, eval_every
        self.teacher_credits, self.heldout_loss, self.credit_midpoint = teacher_credits, heldout_loss, credit_midpoint
        self.credit_direction, self.influence_damping = credit_direction, influence_damping
        self.influence_every, self.influence_iterations = influence_every, influence_iterations
        self.influence: tuple[torch.Tensor, torch.Tensor] | None = None  # the influence direction, while fresh
        self.student_config = TrainConfig(rank=student_rank, learning_rate=learning_rate, optimizer=optimizer,
                                          n3_weight=n3_weight, batch_size=batch_size)
        self.distill = DistillConfig(tau=tau, alpha=alpha, beta=beta, gamma=gamma)
        self.train_queries = self.dataset.queries("train").to(self.device)
        if tabulate_teachers:
            self.pool.tabulate(self.train_queries, progress=progress)
        self.heldout_queries = self.dataset.queries(heldout_split).to(self.device)
        self.heldout_size = batch_size if heldout_size is None else heldout_size
        self.neighbour_index = self.dataset.neighbour_index.to(self.device)

        num_teachers = len(self.pool)
        self.num_features = 4 * (num_teachers + 1) + num_teachers + 2 * EMBEDDING_FEATURES
        self.observation_space = spaces.Box(-1.0, 1.0, (batch_size * self.num_features,), np.float32)
        self.action_space = spaces.MultiBinary(batch_size * num_teachers)
        directions = torch.randn(2, 2 * student_rank, EMBEDDING_FEATURES, generator=torch.Generator().manual_seed(0))
        self.directions = F.normalize(directions, dim=1).to(self.device)

        # [K + 1, B, E] scores (the student's, then the teachers') and the observation's scratch space, allocated once:
        # allocating tensors that large every step cost more than the arithmetic on them (benchmarks/step_costs.py)
        shape = (num_teachers + 1, batch_size, self.dataset.num_entities)
        self._scores, self._work = torch.empty(shape, device=self.device), torch.empty(shape, device=self.device)

        self.student = None
        self.best_student_state: dict[str, torch.Tensor] | None = None
        self.best_valid_mrr = float("-inf")

    # --- Gymnasium API --------------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None or self.student is None:
            student_seed = 0 if seed is None else seed
            self.student = build_student(self.dataset, replace(self.student_config, seed=student_seed), self.device)
            self.optimizer = OPTIMIZERS[self.student_config.optimizer](self.student.parameters(),
                                                                       lr=self.student_config.learning_rate)
            self.generator = torch.Generator().manual_seed(student_seed)
            self.steps_done, self.drop_baseline, self.calibration = 0, 0.0, 1.0
            self.best_student_state, self.best_valid_mrr = None, float("-inf")
            self.influence = None
        order = torch.randperm(len(self.train_queries), generator=self.generator).to(self.device)
        self.batches = [b for b in order.split(self.batch_size) if len(b) == self.batch_size]
        self.batch_index = 0
        self._load_batch()
        self._last_observation = self._observation()
        return self._last_observation, {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.student is None:
            raise RuntimeError("call reset() before step()")
        if self.batch_index == len(self.batches):
            raise RuntimeError("the episode has ended (one pass over the training queries): call reset()")
        selection = self._selection(action)
        batch, teacher_logits, scores = self.batch, self.teacher_logits, self.student_scores
        losses = distillation_loss(scores, batch[:, 2], teacher_logits, selection, self.neighbours,
                                   self.distill.tau, self.distill.alpha, self.distill.beta, self.distill.gamma)
        regulariser = self.student_config.n3_weight * self.student.n3(batch)
        loss = losses.mean() + regulariser
        if self.reward_mode == "credit":  # one backward through the losses serves the reward and the update
            (loss_grads,) = torch.autograd.grad(losses.sum(), scores, retain_graph=True)
            self.optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward([scores, regulariser], [loss_grads / len(batch), None])
            score_change = (self._heldout_score_change() if self.credit_direction == "step"
                            else self._influence_score_change())
            query_rewards = self._credit(scores, loss_grads, score_change) * selection.any(dim=1)
            if self.teacher_credits:
                credits = subset_credits(scores.detach(), teacher_logits, score_change, self.neighbours,
                                         self.distill, self.batch_size)
            self.optimizer.step()
        else:
            heldout = self.heldout_batch() if self.reward_mode == "heldout" else None
            before = self._cross_entropy(batch if heldout is None else heldout, scores if heldout is None else None)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            after = self._cross_entropy(batch if heldout is None else heldout)
            query_rewards = self._query_rewards(before - after)

        self.steps_done += 1
        info = {
            "query_rewards": query_rewards.cpu().numpy(),
            "selection": selection.to(torch.int8).cpu().numpy(),
            "selection_rate": dict(zip(self.teacher_names, selection.float().mean(0).tolist())),
            "student_loss": loss.item(),
            "relations": (batch[:, 1] % self.dataset.num_relations).cpu().numpy(),
        }
        if self.teacher_credits:
            info["subset_credits"] = credits.cpu().numpy()
            info["teacher_credits"] = info["subset_credits"][:, 2 ** np.arange(len(self.pool))]
        if self.eval_every and self.steps_done % self.eval_every == 0:
            info["valid_metrics"] = self._evaluate_valid()
            info["valid_mrr"] = info["valid_metrics"]["mrr"]
        self.batch_index += 1
        truncated = self.batch_index == len(self.batches)
        if truncated:  # there is no next batch: the last observation is shown again
            return self._last_observation, float(query_rewards.mean()), False, truncated, info
        self._load_batch()
        self._last_observation = self._observation()
        return self._last_observation, float(query_rewards.mean()), False, truncated, info

    # --- checkpoints ----------------------------------------------------------------------------------------------

    def training_state(self) -> dict[str, Any]:
        """What a resumed run needs between two episodes: the student, its optimiser, the query-order generator,
        the step count, the reward baseline and the best-valid student (tensors and plain types, for
        ``torch.load(weights_only=True)``)."""
        if self.student is None:
            raise RuntimeError("call reset() before training_state()")
        return {"student": self.student.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "steps_done": self.steps_done,
                "drop_baseline": self.drop_baseline, "best_student": self.best_student_state,
                "best_valid_mrr": self.best_valid_mrr}

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`training_state` into a reset env; the next ``reset()`` (no seed) starts the next pass as
        the uninterrupted run would have."""
        if self.student is None:
            raise RuntimeError("call reset() before load_training_state()")
        self.student.load_state_dict(state["student"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.steps_done, self.drop_baseline = state["steps_done"], state["drop_baseline"]
        self.best_student_state, self.best_valid_mrr = state["best_student"], state["best_valid_mrr"]
        self.influence = None  # solved afresh at the next step

    @property
    def steps_per_episode(self) -> int:
        return len(self.train_queries) // self.batch_size

    # --- pieces of a step -----------------------------------------------------------------------------------------

    def _load_batch(self) -> None:
        """The next batch, its teachers' logits (computed once, used for the observation and the step) and neighbours.

        The teachers' logits are written into the scores buffer, after the student's slot."""
        self.batch = self.train_queries[self.batches[self.batch_index]]
        self.teacher_logits = self.pool.logits(self.batch, out=self._scores[1:])
        self.neighbours = self.neighbour_index.gather(self.batch[:, 0])

    def _observation(self) -> np.ndarray:
        """Features of the current batch. The student's scores are kept with their graph: the student does not change
        before the step on this batch, which then reuses them instead of a second forward."""
        batch = self.batch
        table = self.student.entity_table()
        self.student_scores = self.student(batch, table)
        with torch.no_grad():
            self._scores[0].copy_(self.student_scores)
            features = self._query_features(self._scores, self._work, table)
        return features.clamp_(-1.0, 1.0).flatten().cpu().numpy().astype(np.float32)

    def _query_features(self, scores: torch.Tensor, work: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """[B, F] features from the student's and teachers' scores [K + 1, B, E] (see the class docstring), using
        ``work`` (same shape) as scratch space.

        One exp pass serves every softmax statistic: with ``e = exp(z - max)`` and ``s = sum e``, ``p = e / s`` and
        ``log p = z - max - log s``, so ``sum p log p = (e . z) / s - max - log s``, and the cross term of
        ``KL(teacher || student)`` is ``(e_teacher . z_student) / s_teacher - max_student - log s_student``."""
        models, size, num_entities = scores.shape
        rows, targets = torch.arange(size, device=self.device), self.batch[:, 2]
        flat = scores.view(models * size, num_entities)
        maxima = flat.amax(-1, keepdim=True)
        exps = torch.sub(flat, maxima, out=work.view_as(flat)).exp_()
        sums = exps.sum(-1)
        log_normaliser = (maxima.squeeze(-1) + sums.log()).view(models, size)  # log sum exp z, per model and query
        negative_entropy = row_dot(exps, flat).view(models, size) / sums.view(models, size) - log_normaliser
        cross = torch.stack([row_dot(teacher, flat[:size]) for teacher in exps[size:].split(size)])
        expected_student_log_prob = cross / sums[size:].view(models - 1, size) - log_normaliser[0]
        kl = (negative_entropy[1:] - expected_student_log_prob).clamp_(min=0)  # KL(teacher || student)
        exps, sums = exps.view(models, size, num_entities), sums.view(models, size)  # gathered, then normalised
        neighbour_rows, neighbour_entities = self.neighbours
        neighbour_mass = torch.zeros(models, size, device=self.device).index_add_(
            1, neighbour_rows, exps[:, neighbour_rows, neighbour_entities]) / sums
        target_probs = exps[:, rows, targets] / sums
        # realistic rank - 1 = (E - 1 + sum_j sign(s_j - s_target)) / 2, the target's own sign being 0
        signs = torch.sub(scores, scores[:, rows, targets].unsqueeze(-1), out=work).sign_().sum(-1)
        ranks = 1.0 + (signs + num_entities - 1) / 2
        log_entities = math.log(num_entities)
        per_model = torch.stack([target_probs, torch.log(ranks) / log_entities, -negative_entropy / log_entities,
                                 neighbour_mass], dim=-1)  # [K + 1, B, 4]
        heads = F.normalize(table[self.batch[:, 0]], dim=-1) @ self.directions[0]
        relations = F.normalize(self.student.relation(self.batch[:, 1]), dim=-1) @ self.directions[1]
        return torch.cat([per_model.permute(1, 0, 2).flatten(1), (1 - torch.exp(-kl)).t(), heads, relations], dim=1)

    def _selection(self, action: np.ndarray) -> torch.Tensor:
        action = np.asarray(action)
        shape = (self.batch_size, len(self.pool))
        if action.size != shape[0] * shape[1] or not np.isin(action, (0, 1)).all():
            raise ValueError(f"action must hold {shape[0]} x {shape[1]} zeros and ones (MultiBinary("
                             f"{shape[0] * shape[1]}) or a {shape} array), got shape {action.shape} and values "
                             f"{np.unique(action)[:5]}")
        return torch.as_tensor(action.reshape(shape).astype(bool), device=self.device)

    def _heldout_score_change(self) -> torch.Tensor:
        """[B, E] how the batch's scores move along the optimiser's step on a fresh held-out batch's loss L
        (``heldout_loss``): the derivative along ``c * grad(L)``, with c the per-coordinate factor of the step the
        optimiser is about to take (``students.train.step_scale``: Adagrad divides by the root of its accumulated
        squares), and grad(L) taken at the weights or, with ``credit_midpoint``, half a step further. Call it between
        the step's backward and ``optimizer.step()``: c and the step depend on the step's gradient."""
        weights = [self.student.entity.weight, self.student.relation.weight]
        with torch.no_grad():
            scales = [step_scale(self.optimizer, weight) for weight in weights]
            start = None
            if self.credit_midpoint:
                start = [weight.clone() for weight in weights]
                for weight, scale in zip(weights, scales):
                    weight.sub_(0.5 * scale * weight.grad)
        heldout_grads = self._heldout_gradient(weights)
        with torch.no_grad():
            if self.credit_midpoint:
                for weight, saved in zip(weights, start):
                    weight.copy_(saved)
            entity_step, relation_step = (scale * grad for scale, grad in zip(scales, heldout_grads))
            return self.student.score_change(self.batch, entity_step, relation_step)

    def _heldout_gradient(self, weights: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """The gradient of a fresh held-out batch's loss (``heldout_loss``) with respect to ``weights``."""
        heldout = self.heldout_batch()
        scores, factor = self.student(heldout), None
        if self.heldout_loss in CALIBRATED_LOSSES:
            factor = calibration_factor(scores.detach(), heldout[:, 2], start=self.calibration)
            self.calibration = factor.item()
        return torch.autograd.grad(heldout_loss(scores, heldout[:, 2], self.heldout_loss, factor), weights)

    def _influence_score_change(self) -> torch.Tensor:
        """[B, E] the batch's scores' change along the influence direction ``(H + lambda I)^-1 grad(L)``
        (``dsom_env.influence``), solved on a fresh held-out batch and ``batch_size`` random training queries every
        ``influence_every`` steps and kept between solves (a solve costs ``influence_iterations`` forward-backward
        passes). Its length is set so that a move along it lowers L, to first order, as much as a plain gradient step
        of the student's learning rate would, whatever the damping and the curvature (near 0 for a fresh student,
        whose embeddings start near 0). Scaled as Adagrad's step instead, its mean credit over a first episode on
        MKG-W was about 1e4 times the one-step credit's (-0.11 against 1.3e-5): Adagrad's factor is largest on
        weights whose accumulated squares are still small, which the influence direction need not share."""
        if self.influence is None or self.steps_done % self.influence_every == 0:
            weights = [self.student.entity.weight, self.student.relation.weight]
            heldout_grads = self._heldout_gradient(weights)
            picks = torch.randint(len(self.train_queries), (self.batch_size,), generator=self.generator)
            direction = influence_direction(self.student, self.train_queries[picks.to(self.device)], heldout_grads,
                                            self.influence_damping, self.influence_iterations)
            with torch.no_grad():  # scaled to lower L to first order as much as a gradient step on it would
                step_drop = self.student_config.learning_rate * dot(heldout_grads, heldout_grads)
                self.influence = tuple(v * (step_drop / dot(direction, heldout_grads)) for v in direction)
        with torch.no_grad():
            return self.student.score_change(self.batch, *self.influence)

    @torch.no_grad()
    def _credit(self, scores: torch.Tensor, loss_grads: torch.Tensor, score_change: torch.Tensor) -> torch.Tensor:
        """Per query, the first-order drop of the held-out cross-entropy L that its distillation term alone causes.

        The optimiser moves the weights by ``-c * g`` for the step's gradient g, so the term's share of the step,
        ``-c * grad(KD_b) / B``, changes L by ``-(c * grad(L)) . grad(KD_b) / B``: the derivative of KD_b along
        ``c * grad(L)`` over B, by the chain rule ``dKD_b/ds_b . score_change_b``. Without c this would be the
        credit of a plain gradient step, which on MKG-W ranks the teachers unlike the steps the student takes
        (``benchmarks/reward_alignment.py``). The hard-label term is the same whatever the choice, so it is left
        out: a helpful choice earns a positive reward, a misleading one a negative reward.

        :param scores: [B, E] the student's scores of the batch.
        :param loss_grads: [B, E] the gradient of the per-query losses' sum with respect to ``scores``; the
            cross-entropy's part, ``softmax(s) - onehot(t)``, is taken off here.
        :param score_change: [B, E] from :meth:`_heldout_score_change`.
        """
        distillation_grads = loss_grads - F.softmax(scores, dim=-1)
        distillation_grads[torch.arange(len(scores), device=scores.device), self.batch[:, 2]] += 1.0
        return (distillation_grads * score_change).sum(-1) / self.batch_size

    @torch.no_grad()
    def _cross_entropy(self, queries: torch.Tensor, scores: torch.Tensor | None = None) -> torch.Tensor:
        """The student's per-query hard-label cross-entropy (its scores may be given when already computed)."""
        if scores is None:
            scores = self.student(queries)
        return F.cross_entropy(scores.detach(), queries[:, 2], reduction="none")

    def heldout_batch(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A held-out batch of ``heldout_size`` queries, drawn with ``generator``: by default the env's own, which this
        advances; a copy of it (``torch.Generator().set_state(env.generator.get_state())``) gives the batch the next
        step will draw."""
        generator = self.generator if generator is None else generator
        picks = torch.randint(len(self.heldout_queries), (self.heldout_size,), generator=generator)
        return self.heldout_queries[picks.to(self.device)]

    def _query_rewards(self, drops: torch.Tensor) -> torch.Tensor:
        if self.reward_mode == "heldout":
            return drops.mean().expand(self.batch_size)
        if self.reward_mode == "beneficial":
            rewards = (drops - self.drop_baseline).clamp(min=0.0)
            self.drop_baseline = 0.9 * self.drop_baseline + 0.1 * float(drops.mean())
            return rewards
        return drops

    def _evaluate_valid(self) -> dict[str, float]:
        metrics = evaluate(self.student, self.dataset, "valid", device=self.device)
        if metrics["mrr"] > self.best_valid_mrr:
            self.best_valid_mrr = metrics["mrr"]
            self.best_student_state = {k: v.detach().clone() for k, v in self.student.state_dict().items()}
        return metrics


def benchmark_env(dataset: str | KGDataset, **kwargs: Any) -> TeacherCombinationEnv:
    """The env of a benchmark dataset (``gym.make("DSoM-MKGW-v0")``). Unless ``kwargs`` say otherwise, its student is
    the plain ComplEx configuration tuned on MKG-W valid (``TrainConfig``'s defaults,
    ``benchmarks/results/complex_mkgw.json``), distilled with ``DistillConfig``'s defaults, which MKG-W's grid
    (``benchmarks/distill_benchmark.py --grid``) rates within the noise of its choice, alpha 0.5 with beta 2."""
    student = TrainConfig()
    defaults = {"student_rank": student.rank, "batch_size": student.batch_size, "n3_weight": student.n3_weight,
                "learning_rate": student.learning_rate, **asdict(DistillConfig())}
    return TeacherCombinationEnv(dataset, **{**defaults, **kwargs})
