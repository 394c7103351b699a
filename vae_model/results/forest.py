"""The differences figure: a forest plot of the paired difference between the estimators per
configuration, with the intervals and the decision the report takes (a plan's, given its
pilot)."""

from __future__ import annotations

from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from vae_model.evaluation import decision, statistics, verdict
from vae_model.results import facets
from vae_model.results.facets import estimator_colour
from vae_model.results.layout import DPI, MAX_WIDTH_PX, MIN_WIDTH_IN, plt, tag

FOREST_ROW_IN, FOREST_ROWS_PER_PAGE = 0.45, 24
SEED_STYLE = {"marker": "o", "ms": 4, "mfc": "none", "ls": "none", "alpha": 0.8}


def _pair(group: dict, records: dict, metric: str):
    """Per seed both estimators have: first estimator minus second (analytic - Monte-Carlo)."""
    if len(group["models"]) < 2:
        return []
    (a, names_a), (b, names_b) = list(group["models"].items())[:2]
    by_seed_b = {records[n]["seed"]: n for n in names_b if records[n].get("heldout")}
    pairs = sorted((records[n]["seed"], n, by_seed_b[records[n]["seed"]]) for n in names_a
                   if records[n].get("heldout") and records[n]["seed"] in by_seed_b)
    return [(seed, statistics.finite_score(n, metric, records[n]["heldout"][metric])
             - statistics.finite_score(m, metric, records[m]["heldout"][metric]))
            for seed, n, m in pairs]


def _short_outcome(found: dict, count: int) -> str:
    if count < 2:
        return f"{count} seed: no interval" if count else "no pair"
    if found["decision"] == "better":
        return "first better" if found["mean_difference"] < 0 else "second better"
    return found["decision"]


def differences_figure(groups: list[dict], records: dict,
                       margin: float = decision.DEFAULT_MARGIN, pilot: dict | None = None,
                       comparisons: int = 1) -> plt.Figure:
    """A forest plot, one panel per likelihood: per configuration, the paired difference of
    held-out -ELBO (and IWAE-K) between the two estimators, each seed and the mean with its
    95% (thin) and 90% (thick) intervals over seeds (a plan's, given its ``pilot``), the
    equivalence margin ±``margin`` as a band; the decision beside each row, as the report
    takes it (over ``comparisons`` with a plan)."""
    likelihoods = list(dict.fromkeys(g["likelihood"] for g in groups))
    a, b = facets.estimator_order(e for g in groups for e in g["models"])[:2]
    rows = max(sum(g["likelihood"] == lik for g in groups) for lik in likelihoods)
    width = min(max(MIN_WIDTH_IN, 5.6 * len(likelihoods)), MAX_WIDTH_PX / DPI)
    fig, axes = plt.subplots(1, len(likelihoods), squeeze=False, layout="constrained",
                             figsize=(width, FOREST_ROW_IN * rows + 1.9))
    names = {"first better": f"{facets.estimator_label(a)} better",
             "second better": f"{facets.estimator_label(b)} better"}
    winners = {"first better": estimator_colour(a), "second better": estimator_colour(b)}
    k = next((r["heldout"].get("iwae_k") for r in records.values() if r.get("heldout")), "K")
    for ax, likelihood in zip(axes[0], likelihoods):
        members = [g for g in groups if g["likelihood"] == likelihood]
        for y, group in enumerate(members):
            for metric, shift, style in (("neg_elbo", 0.0, "D"), ("iwae_nll", -0.28, "s")):
                pairs = _pair(group, records, metric)
                if not pairs:
                    continue
                seeds, differences = zip(*pairs)
                mask = None if pilot is None else [s in pilot["seeds"] for s in seeds]
                found = statistics.quantity(list(differences), margin, mask, comparisons)
                mean, (ci95, ci90) = found["mean_difference"], verdict.deciding(found)
                colour = "black" if metric == "neg_elbo" else "grey"
                tag(ax.plot(differences, [y + shift] * len(differences), color=colour, ms=3,
                            **{k: v for k, v in SEED_STYLE.items() if k != "ms"}), likelihood)
                error = None if ci95 is None else [[mean - ci95[0]], [ci95[1] - mean]]
                tag(ax.errorbar([mean], [y + shift], xerr=error, fmt=style, color=colour, ms=6,
                                capsize=3, mfc=colour if metric == "neg_elbo" else "white"),
                    likelihood)
                if ci90 is not None:  # the TOST interval, drawn thicker inside the 95% one
                    tag(ax.plot(ci90, [y + shift] * 2, color=colour, lw=3, solid_capstyle="butt"),
                        likelihood)
                if metric == "neg_elbo":
                    outcome = _short_outcome(found, len(differences))
                    ax.annotate(names.get(outcome, outcome), (1, y), xycoords=("axes fraction",
                                "data"), xytext=(6, 0), textcoords="offset points", va="center",
                                color=winners.get(outcome, "dimgrey"))
        ax.axvspan(-margin, margin, color="#009E73", alpha=0.12, lw=0)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(range(len(members)), [facets.title(g["configuration"], [
            k for k in g["varying"] if k != "likelihood"] or ["architecture", "latent_size"])
            for g in members])
        ax.set_ylim(len(members) - 0.5, -0.6)
        ax.grid(axis="y", visible=False)
        ax.set_title(facets.LIKELIHOOD_LABELS.get(likelihood, likelihood))
    for ax in axes[0]:
        ax.set_xlabel(f"{facets.estimator_label(a)} − {facets.estimator_label(b)}, nats per "
                      f"image (< 0: {facets.estimator_label(a)} better)")
    adjusted = f", Bonferroni over {comparisons}" if pilot and comparisons > 1 else ""
    fig.suptitle("Paired difference (same seed): seeds, mean, 90% (thick) and 95% intervals"
                 + adjusted)
    handles = [Line2D([], [], color="black", marker="D", ls="none", label="held-out −ELBO"),
               Line2D([], [], color="grey", marker="s", mfc="white", ls="none",
                      label=f"IWAE-{k}"),
               Line2D([], [], color="black", marker="o", mfc="none", ls="none", ms=3,
                      label="each seed"),
               Patch(color="#009E73", alpha=0.12, label=f"equivalence margin ±{margin:g}")]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, frameon=False)
    return fig
