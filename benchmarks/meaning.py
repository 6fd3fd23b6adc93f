"""`bench.py --only meaning`: what the distribution and pairwise heads reach on generated data, each beside a linear
head trained on the same images in the same run (figures for docs/score-meaning.md, rendered by readme_figures.py).

A tiny random backbone and generated pictures: the figures show that the heads learn what they claim (the raters'
spread, preferences) next to the linear baseline, not how well they do on real photos.
"""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from scipy import stats


def _train(store: str, args: list[str]) -> dict:
    from clip_aesthetics.cli import app as cli

    if cli.main(["main", *args, "--gallery", "false"]) != 0:
        raise RuntimeError(f"training failed: {args}")
    client = mlflow.MlflowClient(store)
    run = client.search_runs([e.experiment_id for e in client.search_experiments()], order_by=["start_time DESC"],
                             max_results=1)[0]
    return {"run": run, "metrics": run.data.metrics}


def bench_meaning(work: Path, quick: bool) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    here = Path.cwd()
    os.chdir(work)  # MLflow writes its artifacts under ./mlruns: in the temporary folder, never the repository
    try:
        return _bench_meaning(work.resolve(), quick)
    finally:
        os.chdir(here)


def _bench_meaning(work: Path, quick: bool) -> dict:
    from clip_aesthetics.backbones.families import save_random_clip
    from clip_aesthetics.data.sample_data import write_sample_pairs, write_sample_votes
    from clip_aesthetics.scoring.uris import load_scorer

    work.mkdir(parents=True, exist_ok=True)
    store = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = store
    mlflow.set_tracking_uri(store)
    clip = save_random_clip(work / "clip", "tiny", seed=0)
    common = ["--clip", str(clip), "--cache-dir", str(work / "cache"), "--lr", "1e-2"]
    n_votes, n_images, n_pairs = (300, 150, 1200) if quick else (1200, 400, 5000)
    votes = write_sample_votes(work / "votes", n_votes)
    table = ["--labels", str(votes / "votes.csv"), "--vote-columns", ",".join(f"c{k}" for k in range(1, 11))]
    distribution = _train(store, [*common, *table, "--head", "distribution", "--epochs", "20"])["metrics"]
    linear = _train(store, [*common, *table, "--head", "linear", "--epochs", "20"])["metrics"]
    pairs = write_sample_pairs(work / "pairs", n_images, n_pairs)
    pairwise = _train(store, [*common, "--labels", str(pairs / "pairs.csv"), "--head", "pairwise", "--epochs", "10"])
    on_scores = _train(store, [*common, "--labels", str(pairs / "scores.csv"), "--epochs", "20"])
    known = pd.read_csv(pairs / "scores.csv")

    def scores_of(trained: dict) -> pd.Series:  # every image, training ones included: both models alike
        model = mlflow.search_logged_models(output_format="list", filter_string=(
            f"source_run_id = '{trained['run'].info.run_id}'"))[0].model_uri
        return load_scorer(model).score([str(pairs / p) for p in known["image"]])["score"]

    scored = pd.DataFrame({"score": scores_of(pairwise)})
    linear_all = scores_of(on_scores)
    return {
        "meaning_vote_images": n_votes, "meaning_pair_images": n_images, "meaning_pairs": n_pairs,
        "meaning_distribution_test_spearman": distribution["best_test_spearman"],
        "meaning_linear_test_spearman": linear["best_test_spearman"],
        "meaning_distribution_test_std_spearman": distribution["best_test_std_spearman"],
        "meaning_distribution_test_std_pearson": distribution["best_test_std_pearson"],
        "meaning_distribution_test_emd": distribution["best_test_emd"],
        "meaning_pairwise_test_pair_accuracy": pairwise["metrics"]["best_test_pair_accuracy"],
        "meaning_pairwise_test_pair_logloss": pairwise["metrics"]["best_test_pair_logloss"],
        "meaning_pairwise_spearman_vs_true_scores": float(stats.spearmanr(scored["score"], known["score"]).statistic),
        "meaning_linear_on_true_scores_spearman": float(stats.spearmanr(linear_all, known["score"]).statistic),
        "meaning_pairwise_score_mean": float(np.mean(scored["score"])),
        "meaning_pairwise_score_std": float(np.std(scored["score"])),
    }


def meaning_table(m: dict) -> list[str]:
    """The block of docs/score-meaning.md."""
    return [
        f"One run of `{m.get('command', '')} --json out.json`, {m['date']}, on {m['machine']}; a tiny random "
        "backbone and generated pictures, each head beside a linear head on the same images:", "",
        "| data | head | what it reached on held-out data | linear head, same data |", "|---|---|---|---|",
        f"| {m['meaning_vote_images']} images with 200 votes each, the raters' spread independent of the mean "
        f"| distribution | mean: Spearman {m['meaning_distribution_test_spearman']:.3f}; std: Spearman "
        f"{m['meaning_distribution_test_std_spearman']:.3f}, Pearson {m['meaning_distribution_test_std_pearson']:.3f}"
        f"; EMD {m['meaning_distribution_test_emd']:.4f} | mean: Spearman {m['meaning_linear_test_spearman']:.3f}; "
        "no std |",
        f"| {m['meaning_pairs']:,} pairs of {m['meaning_pair_images']} images, 10% of labels flipped | pairwise | "
        f"pair accuracy {m['meaning_pairwise_test_pair_accuracy']:.3f} (chance 0.5, about 0.9 at most with this "
        f"noise), log-loss {m['meaning_pairwise_test_pair_logloss']:.3f} (ln 2 = 0.693); its scores rank the true "
        f"ones with Spearman {m['meaning_pairwise_spearman_vs_true_scores']:.3f}, mean "
        f"{m['meaning_pairwise_score_mean']:.2f}, std {m['meaning_pairwise_score_std']:.2f} (all images) | trained "
        f"on the true scores themselves: Spearman {m['meaning_linear_on_true_scores_spearman']:.3f} (all images) |",
        "",
    ]
