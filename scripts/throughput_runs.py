"""One timed training run of one tool, then its filtered test MRR: the child process of scripts/bench_throughput.py.

Each run is a fresh process (``python scripts/throughput_runs.py '<spec json>'``) so that TensorFlow and PyTorch never
share a process, their thread pools start from their defaults, and one tool's memory does not weigh on the other's run.
The spec names the tool (``embretrain`` or ``pykeen``), the data folder (train.txt, valid.txt, test.txt, already cut
to the same vocabulary by the parent), the model and every training setting; the run prints one JSON object on stdout:
per-epoch seconds, the number of training triples, and filtered test MRR / Hits@10 (realistic ranks, head and tail
pooled, filtered against train + valid + test) when ``evaluate`` is set. With ``eval_epochs`` it prints only the test
MRR after each of those epoch counts (``{"curve": {"3": mrr, ...}}``), timing nothing: embretrain trains once per
count from the same seed, PyKEEN ranks after those epochs of one run.

Both tools train the same objective: embretrain's logistic loss with self-adversarial weights is PyKEEN's ``NSSALoss``
(``margin`` = gamma for TransE, 0 for DistMult; adversarial temperature 0 = uniform weights), Glorot-uniform starts
over the whole ``[n, dim]`` table (``torch.nn.init.xavier_uniform_``), no unit-norm constraint on entity rows (PyKEEN's
default for TransE and DistMult renormalises them after every step; embretrain does not), the same lr,
``negatives`` uniform negatives per positive corrupting its head or its tail (PyKEEN's ``BasicNegativeSampler``).
Left different: the optimizer. PyKEEN's is dense Adam (every row's moments move each step); embretrain's is its
default for the model, sparse (touched rows only): lazy Adam for TransE, Adam without momentum (``rmsprop``) for
DistMult. And NSSALoss halves the loss (a constant factor Adam and rmsprop do not see).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

__all__ = ["run_embretrain", "run_pykeen"]


def run_embretrain(spec: dict) -> dict:
    """Train with ``embretrain.api.train`` (the step users get) and rank with ``embretrain.api.evaluate``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from embretrain import api
    from embretrain.config import resolve_settings

    data = Path(spec["data"])
    settings = resolve_settings(spec["config_file"], spec["overrides"])
    if spec.get("eval_epochs"):  # the MRR curve: one run per epoch count, from the same seed (none is timed)
        known = [data / "train.txt", data / "valid.txt"]
        curve = {}
        for epochs in spec["eval_epochs"]:
            ckpt, _ = api.train(data / "train.txt", dataclasses.replace(settings, epochs=epochs), progress=False)
            curve[str(epochs)] = api.evaluate(ckpt, data / "test.txt", known=known)["mrr"]
        return {"curve": curve}
    ckpt, summary = api.train(data / "train.txt", settings, progress=False)
    out = {"examples": summary["examples"], "entities": summary["entities"], "epoch_seconds": summary["epoch_seconds"],
           "final_loss": summary["final_loss"]}
    if spec["evaluate"]:
        ev = api.evaluate(ckpt, data / "test.txt", known=[data / "train.txt", data / "valid.txt"])
        out.update(test_mrr=ev["mrr"], test_hits10=ev["hits@10"], test_triples=ev["test_examples"],
                   eval_seconds=ev["seconds"])
    import tensorflow as tf

    out["threads"] = {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                      "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
    return out


def run_pykeen(spec: dict) -> dict:
    """Train with PyKEEN's sLCWA loop and basic negative sampler; rank with its filtered RankBasedEvaluator."""
    import torch
    from pykeen.evaluation import RankBasedEvaluator
    from pykeen.losses import NSSALoss
    from pykeen.models import DistMult, TransE
    from pykeen.regularizers import PowerSumRegularizer
    from pykeen.training import SLCWATrainingLoop
    from pykeen.training.callbacks import TrainingCallback
    from pykeen.triples import TriplesFactory
    from pykeen.utils import set_random_seed

    s = spec["settings"]  # the effective embretrain settings, resolved by the parent
    data = Path(spec["data"])
    set_random_seed(s["seed"])
    if s["threads"]:  # the same thread count as embretrain's run (its `threads` setting)
        torch.set_num_threads(s["threads"])
    train = TriplesFactory.from_path(data / "train.txt")
    ids = dict(entity_to_id=train.entity_to_id, relation_to_id=train.relation_to_id)
    if s["loss"] != "logistic":
        raise SystemExit(f"pykeen side: only embretrain's logistic loss has a PyKEEN twin (NSSALoss), got {s['loss']}")
    common = dict(triples_factory=train, embedding_dim=s["dim"], random_seed=s["seed"],
                  entity_initializer=torch.nn.init.xavier_uniform_, entity_constrainer=None,
                  relation_initializer=torch.nn.init.xavier_uniform_)
    if s["model"] == "transe":
        loss = NSSALoss(margin=s["gamma"], adversarial_temperature=s["adversarial_temperature"])
        model = TransE(scoring_fct_norm=s["norm"], loss=loss, **common)
    elif s["model"] == "distmult":
        loss = NSSALoss(margin=0.0, adversarial_temperature=s["adversarial_temperature"])
        # embretrain: regularization * mean over looked-up rows of the squared L2 norm (power sum, p = 2)
        model = DistMult(loss=loss, regularizer=PowerSumRegularizer,
                         regularizer_kwargs=dict(weight=s["regularization"], p=2.0), **common)
    else:
        raise SystemExit(f"pykeen side: no twin for model {s['model']!r} (transe, distmult)")

    def test_figures() -> dict:
        test = TriplesFactory.from_path(data / "test.txt", **ids)
        valid = TriplesFactory.from_path(data / "valid.txt", **ids)
        t0 = time.perf_counter()
        result = RankBasedEvaluator(filtered=True).evaluate(
            model, test.mapped_triples, additional_filter_triples=[train.mapped_triples, valid.mapped_triples],
            batch_size=256, use_tqdm=False,
        )
        return dict(test_mrr=float(result.get_metric("both.realistic.inverse_harmonic_mean_rank")),
                    test_hits10=float(result.get_metric("both.realistic.hits_at_10")),
                    test_triples=int(test.num_triples), eval_seconds=round(time.perf_counter() - t0, 3))

    class EpochClock(TrainingCallback):
        """Wall time at the end of each epoch (PyKEEN has no per-epoch timer of its own); with ``eval_epochs``, the
        test MRR after those epochs (the loop puts the model back in training mode at every epoch's start)."""

        def __init__(self):
            super().__init__()
            self.ends: list[float] = []
            self.curve: dict[str, float] = {}

        def post_epoch(self, epoch: int, epoch_loss: float, **kwargs) -> None:
            self.ends.append(time.perf_counter())
            if epoch in spec.get("eval_epochs", ()):
                self.curve[str(epoch)] = test_figures()["test_mrr"]

    loop = SLCWATrainingLoop(model=model, triples_factory=train, optimizer="adam", optimizer_kwargs=dict(lr=s["lr"]),
                             negative_sampler="basic", negative_sampler_kwargs=dict(num_negs_per_pos=s["negatives"]))
    clock = EpochClock()
    start = time.perf_counter()
    epochs = max(spec["eval_epochs"]) if spec.get("eval_epochs") else s["epochs"]
    losses = loop.train(triples_factory=train, num_epochs=epochs, batch_size=s["batch_size"], use_tqdm=False,
                        callbacks=[clock])
    if spec.get("eval_epochs"):
        return {"curve": clock.curve}
    edges = [start, *clock.ends]
    out = {"examples": int(train.num_triples), "entities": int(train.num_entities),
           "epoch_seconds": [round(b - a, 3) for a, b in zip(edges, edges[1:])], "final_loss": float(losses[-1]),
           "threads": {"torch": torch.get_num_threads()}}
    if spec["evaluate"]:
        out.update(test_figures())
    return out


RUNNERS = {"embretrain": run_embretrain, "pykeen": run_pykeen}

if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    result = RUNNERS[spec["tool"]](spec)
    sys.stdout.write(json.dumps(result) + "\n")
