"""Single-layer residual units (Sec. 3.1): a residual function of one layer shows no advantage.

"The form of the residual function F is flexible. Experiments in this paper involve a function F that has two or three
layers, while more layers are possible. But if F has only a single layer, Eqn.(1) is similar to a linear layer:
y = W1 x + x, for which we have not observed advantages."

At 20 and 56 layers this trains ResNets whose units hold one 3x3 convolution + BN (`resnetN_1layer`: twice as many
units, the same 3x3 layers and parameters) beside `degradation`'s plain nets and two-layer ResNets (reused), with the
recipe and curves of Fig. 6, and decides with the same noise margin whether one-layer units beat the plain net and
whether they match the two-layer units.
"""

from __future__ import annotations

from pathlib import Path

from reslab.experiments import comparison
from reslab.experiments.degradation import compare, train_claim
from reslab.experiments.report import NOT_REPRODUCED, REPRODUCED, write_report, write_results
from reslab.experiments.runner import Context, RunResult, RunSpec, by_key

DEPTHS = (20, 56)
KINDS = {"plain": "plain", "resnet{}_1layer": "one-layer units", "resnet": "two-layer units"}  # model -> kind


def model_name(kind: str, depth: int) -> str:
    return kind.format(depth) if "{}" in kind else f"{kind}{depth}"


def specs(ctx: Context) -> list[RunSpec]:
    # plain and two-layer runs share their names with degradation's, so an earlier `degradation` run is reused.
    return [RunSpec(model_name(k, d), s) for d in DEPTHS for k in KINDS for s in range(ctx.seeds)]


def verdicts(groups: dict[str, list[RunResult]]) -> tuple[list[str], dict[str, str]]:
    lines, flags = [], {}
    for d in DEPTHS:
        plain, one, two = (groups[model_name(k, d)] for k in ("plain", "resnet{}_1layer", "resnet"))
        o, p, vs_plain = compare(one, plain)
        _, t, vs_two = compare(one, two)
        flags[f"one_vs_plain_{d}"], flags[f"one_vs_two_{d}"] = vs_plain, vs_two
        lines.append(f"- **{d} layers**: one-layer units end at {o:.2f}% training error against {p:.2f}% for the plain "
                     f"net (**{vs_plain}**) and {t:.2f}% for two-layer units (**{vs_two}**).")  # fmt: skip
    gains = [d for d in DEPTHS if flags[f"one_vs_plain_{d}"] == "lower"]
    if not gains:
        verdict = "**consistent** with these runs: at no depth do one-layer units train better than the plain net"
    elif len(gains) == len(DEPTHS):
        verdict = "**not reproduced**: one-layer units train better than the plain nets at every depth here"
    else:
        verdict = (f"**mixed**: one-layer units train better than the plain net at {', '.join(map(str, gains))} "
                   "layers only")  # fmt: skip
    lines.append(f"- The paper saw no advantage in residual functions of one layer: {verdict}. A gap counts when it "
                 "exceeds twice its standard error, as in Fig. 6's report.")  # fmt: skip
    flags["verdict"] = verdict.split("**")[1]
    return lines, flags


def run(ctx: Context) -> Path:
    results = ctx.runner.run_all(specs(ctx))
    groups = by_key(results)
    nets = {d: {label: model_name(k, d) for k, label in KINDS.items()} for d in DEPTHS}
    table, sections = comparison.sections(ctx, groups, nets, "single_layer_curves.png", "One-layer units: "
                                          "y = relu(BN(W1 x) + x), option A shortcuts, twice as many units as the "
                                          "two-layer net of the same depth.")  # fmt: skip
    statements, flags = verdicts(groups)
    sections.append("## Verdict\n\n" + "\n".join(statements))
    claims = []
    for d in DEPTHS:  # the paper's claim is "no advantage": as high as plain, or higher, agrees with it
        c = train_claim(
            f"Single-layer units give no advantage over plain at {d} layers",
            "no advantage observed (Sec. 3.1)",
            groups,
            model_name("resnet{}_1layer", d),
            model_name("plain", d),
            "lower",
        )
        c["verdict"] = REPRODUCED if flags[f"one_vs_plain_{d}"] != "lower" else NOT_REPRODUCED
        claims.append(c)
    write_results(ctx, table, {**flags, "claims": claims})
    return write_report(ctx, f"Single-layer residual units on {ctx.data_label}", "Sec. 3.1", sections,
                        list(results.values()))  # fmt: skip
