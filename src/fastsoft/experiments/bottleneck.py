"""The softmax bottleneck at small scale: Kanai et al., "Sigsoftmax: reanalysis of the
softmax bottleneck" (NeurIPS 2018), checked on a laptop.

    python -m fastsoft.experiments.bottleneck [--quick] [--out DIR] [--seed N] [--write-docs]

Design:
1. Ranks (the paper's Table 3 and Figure 1): random hidden vectors H (N x d) and output
   weights W (d x M); the N x M matrix of log-outputs of softmax (with and without an
   output bias), the ReLU- and sigmoid-based functions of the paper's appendix (eqs. 34
   and 35, eps = 1e-8), sigsoftmax, MoS and MoSS (K components, context vectors
   tanh(H W_hk) and prior logits H W_pi as in the paper's section 2.3).  The numerical
   rank counts singular values above Numerical Recipes' threshold
   0.5 sqrt(N + M + 1) s_max eps, the rule the paper cites ([26]).
2. The bottleneck in numbers: a target distribution P* over M classes for N contexts whose
   log-probability matrix has full rank (softmax of Gaussian logits), and a factorised
   model (free H, W, d << M; MoS/MoSS add W_hk and W_pi) fitted by full-batch Adam to
   minimise the cross-entropy to P* (probability targets), i.e. KL(P* || P_model).  The
   losses and gradients with respect to the logits come only from fastsoft's fused
   kernels (cross_entropy, mixture_cross_entropy); the rest of the chain rule is a few
   matrix products.  ReLU- and sigmoid-based outputs are not fastsoft functions and are
   only in the rank table.
3. Output: results.json, results.md and PNG plots (when matplotlib is installed) in --out;
   --write-docs also rewrites the generated section of docs/paper.md and docs/paper_*.png
   in a source checkout.
"""

import argparse
import json
import math
import pathlib
import sys
import time

import numpy as np

import fastsoft as fs

RELU_EPS = 1e-8
FUNCTIONS = ("softmax", "softmax+bias", "g:ReLU", "g:sigmoid", "sigsoftmax", "MoS", "MoSS")
TRAINED = ("softmax", "sigsoftmax", "MoS", "MoSS")

# Table 3 of the paper: ranks of the log-output matrices on the test sets (d = 400 with
# an output bias, so its softmax row belongs next to ours with a bias: d + 2 = 402).
PAPER_RANKS = {
    "softmax+bias": (402, 402), "g:ReLU": (8243, 31400), "g:sigmoid": (1304, 463),
    "sigsoftmax": (4640, 5465), "MoS": (9980, 12093), "MoSS": (9986, 19834),
}
# Tables 1 and 2: test perplexities after dynamic evaluation (PTB, WT2).
PAPER_TEST_PPL = {
    "softmax": (50.5, 43.3), "g:ReLU": (2.78e5, 2.30e4), "g:sigmoid": (48.9, 43.5),
    "sigsoftmax": (49.2, 42.9), "MoS": (48.0, 40.8), "MoSS": (47.7, 40.3),
}

CONFIGS = {
    # rank part: N contexts, M classes, d hidden, K components, logit scales of the sweep;
    # fit part: N contexts, M classes, d hidden, K components, Adam steps, seeds
    "full": {"rank": dict(N=1500, M=800, d=32, K=4, scales=(0.25, 1.0, 4.0, 16.0)),
             "fit": dict(N=256, M=128, d=8, K=4, steps=800, lr=0.03, repeats=3)},
    "quick": {"rank": dict(N=300, M=150, d=10, K=3, scales=(0.25, 4.0)),
              "fit": dict(N=96, M=48, d=4, K=3, steps=150, lr=0.05, repeats=1)},
}
TARGETS = ("gaussian", "zipf")


# ---------------------------------------------------------------------------------------
# 1. Ranks of log-output matrices


def numerical_rank(singular_values, shape):
    """Singular values above 0.5 sqrt(m + n + 1) s_max eps (Numerical Recipes' rule)."""
    s = np.asarray(singular_values)
    threshold = 0.5 * math.sqrt(shape[0] + shape[1] + 1) * s[0] * np.finfo(np.float64).eps
    return int(np.count_nonzero(s > threshold))


def _log_sigmoid(z):
    return np.minimum(z, 0) - np.log1p(np.exp(-np.abs(z)))


def _mixture_inputs(H, W, W_h, w_prior):
    """Component logits (N, K, M) and prior logits (N, K) of MoS/MoSS (paper sec. 2.3)."""
    context = np.tanh(np.einsum("nd,kde->nke", H, W_h))
    return context @ W, H @ w_prior


def log_outputs(H, W, bias, W_h, w_prior):
    """The N x M log-output matrix of every function in FUNCTIONS."""
    z = H @ W
    relu = np.maximum(z, 0)
    # eq. 34 as printed: (ReLU(z_i) + eps) / (sum_m ReLU(z_m) + eps)
    log_relu = np.log(relu + RELU_EPS) - np.log(relu.sum(axis=1, keepdims=True) + RELU_EPS)
    log_sig = _log_sigmoid(z)
    mixture_logits, prior_logits = _mixture_inputs(H, W, W_h, w_prior)
    return {
        "softmax": fs.log_softmax(z),
        "softmax+bias": fs.log_softmax(z + bias),
        "g:ReLU": log_relu,
        "g:sigmoid": log_sig - fs.logsumexp(log_sig, keepdims=True),
        "sigsoftmax": fs.log_sigsoftmax(z),
        "MoS": fs.log_mixture(mixture_logits, prior_logits, activation="softmax"),
        "MoSS": fs.log_mixture(mixture_logits, prior_logits, activation="sigsoftmax"),
    }


def rank_experiment(N, M, d, K, scales, seed):
    """Ranks and singular values at logit scale 2 (std of z about 2), and the ranks of a
    sweep over other logit scales (W multiplied by the scale)."""
    rng = np.random.default_rng(seed)
    H = rng.standard_normal((N, d))
    W = rng.standard_normal((d, M)) / math.sqrt(d)
    bias = rng.standard_normal(M)
    W_h = rng.standard_normal((K, d, d)) / math.sqrt(d)
    w_prior = rng.standard_normal((d, K)) / math.sqrt(d)
    results = {}
    for name, matrix in log_outputs(H, 2 * W, bias, W_h, w_prior).items():
        s = np.linalg.svd(matrix, compute_uv=False)
        results[name] = {"rank": numerical_rank(s, matrix.shape), "singular_values": s}
    sweep = {}
    for scale in scales:
        outputs = log_outputs(H, scale * W, bias, W_h, w_prior)
        sweep[scale] = {name: numerical_rank(np.linalg.svd(m, compute_uv=False), m.shape)
                        for name, m in outputs.items()}
    return results, sweep


# ---------------------------------------------------------------------------------------
# 2. Fitting a high-rank target with a factorised model


class Adam:
    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        self.params, self.lr, self.beta1, self.beta2, self.eps = params, lr, beta1, beta2, eps
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, grads):
        self.t += 1
        correction1 = 1 - self.beta1 ** self.t
        correction2 = 1 - self.beta2 ** self.t
        for key, g in grads.items():
            self.m[key] = self.beta1 * self.m[key] + (1 - self.beta1) * g
            self.v[key] = self.beta2 * self.v[key] + (1 - self.beta2) * g * g
            step = (self.m[key] / correction1) / (np.sqrt(self.v[key] / correction2) + self.eps)
            self.params[key] -= self.lr * step


def make_target(kind, N, M, rng):
    """A target P* (N contexts x M classes) whose log-probability matrix has full rank.

    "gaussian": softmax of Gaussian logits of standard deviation 2.
    "zipf": every context a Zipf law (p_r proportional to r^-1.1) over its own random
    permutation of the classes -- heavy-tailed, like next-word distributions.
    """
    if kind == "gaussian":
        return fs.softmax(2.0 * rng.standard_normal((N, M)))
    zipf = np.arange(1, M + 1, dtype=np.float64) ** -1.1
    zipf /= zipf.sum()
    return np.stack([zipf[rng.permutation(M)] for _ in range(N)])


def init_params(function, N, M, d, K, rng):
    params = {"H": rng.standard_normal((N, d)),
              "W": rng.standard_normal((d, M)) / math.sqrt(d)}
    if function in ("MoS", "MoSS"):
        params["W_h"] = rng.standard_normal((K, d, d)) / math.sqrt(d)
        params["w_prior"] = 0.1 * rng.standard_normal((d, K))
    return params


def loss_and_grads(function, params, target):
    """Mean cross-entropy to the probability targets and its parameter gradients; the
    gradient with respect to the logits is fastsoft's fused one."""
    H, W = params["H"], params["W"]
    if function in ("softmax", "sigsoftmax"):
        loss, g_logits = fs.cross_entropy(H @ W, target, activation=function,
                                          return_grad=True)
        return float(loss), {"H": g_logits @ W.T, "W": H.T @ g_logits}
    W_h, w_prior = params["W_h"], params["w_prior"]
    context = np.tanh(np.einsum("nd,kde->nke", H, W_h))            # (N, K, d)
    activation = "softmax" if function == "MoS" else "sigsoftmax"
    loss, (g_logits, g_prior) = fs.mixture_cross_entropy(
        context @ W, H @ w_prior, target, activation=activation, return_grad=True)
    d = H.shape[1]
    g_context = g_logits @ W.T                                       # (N, K, d)
    g_pre = g_context * (1 - context * context)
    return float(loss), {
        "W": context.reshape(-1, d).T @ g_logits.reshape(-1, W.shape[1]),
        "W_h": np.einsum("nd,nke->kde", H, g_pre),
        "H": np.einsum("nke,kde->nd", g_pre, W_h) + g_prior @ w_prior.T,
        "w_prior": H.T @ g_prior,
    }


def model_log_probs(function, params):
    H, W = params["H"], params["W"]
    if function in ("softmax", "sigsoftmax"):
        return (fs.log_softmax if function == "softmax" else fs.log_sigsoftmax)(H @ W)
    logits, prior = _mixture_inputs(H, W, params["W_h"], params["w_prior"])
    return fs.log_mixture(logits, prior,
                          activation="softmax" if function == "MoS" else "sigsoftmax")


def fit(function, target, d, K, steps, lr, seed):
    N, M = target.shape
    rng = np.random.default_rng(seed)
    params = init_params(function, N, M, d, K, rng)
    optimizer = Adam(params, lr)
    entropy = float(-np.sum(target * np.log(target)) / N)
    curve = []
    for _ in range(steps):
        loss, grads = loss_and_grads(function, params, target)
        curve.append(loss - entropy)
        optimizer.step(grads)
    log_p = model_log_probs(function, params)
    cross_entropy = float(-np.sum(target * log_p) / N)
    s = np.linalg.svd(log_p, compute_uv=False)
    return {
        "kl": cross_entropy - entropy,
        "perplexity": math.exp(cross_entropy),
        "target_perplexity": math.exp(entropy),
        "rank": numerical_rank(s, log_p.shape),
        "parameters": int(sum(v.size for v in params.values())),
        "curve": curve,
    }


def fit_experiment(N, M, d, K, steps, lr, repeats, seed):
    """{target kind: {function: [one result per seed]}}."""
    results = {}
    for kind in TARGETS:
        results[kind] = {name: [] for name in TRAINED}
        for repeat in range(repeats):
            target = make_target(kind, N, M, np.random.default_rng([seed, repeat, 1]))
            target_rank = numerical_rank(np.linalg.svd(np.log(target), compute_uv=False),
                                         target.shape)
            for name in TRAINED:
                run = fit(name, target, d, K, steps, lr, seed=[seed, repeat, 2])
                run["target_rank"] = target_rank
                results[kind][name].append(run)
    return results


# ---------------------------------------------------------------------------------------
# 3. Reporting


def _mean_std(values):
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std())


def summarize(ranks, sweep, fits, rank_config, fit_config):
    d, fd = rank_config["d"], fit_config["d"]
    summary = {
        "rank_config": {k: v for k, v in rank_config.items()},
        "fit_config": fit_config,
        "ranks": {name: ranks[name]["rank"] for name in FUNCTIONS},
        "rank_sweep": {str(scale): row for scale, row in sweep.items()},
        "fits": {},
    }
    for kind in TARGETS:
        summary["fits"][kind] = {}
        for name in TRAINED:
            runs = fits[kind][name]
            summary["fits"][kind][name] = {
                "kl": _mean_std([r["kl"] for r in runs]),
                "perplexity": _mean_std([r["perplexity"] for r in runs]),
                "target_perplexity": _mean_std([r["target_perplexity"] for r in runs]),
                "rank": [r["rank"] for r in runs],
                "target_rank": [r["target_rank"] for r in runs],
                "parameters": runs[0]["parameters"],
            }
    r = summary["ranks"]
    others = ("g:ReLU", "g:sigmoid", "sigsoftmax", "MoS", "MoSS")
    sweep_text = "; ".join(
        f"scale {scale}: " + ", ".join(f"{n} {row[n]}" for n in FUNCTIONS)
        for scale, row in sweep.items())
    claims = [
        ("Table 3 / Theorem 2: log-softmax outputs span at most d+1 dimensions (d+2 with "
         "an output bias)", "402 = 400 + bias + 1 on PTB and WT2",
         f"softmax {r['softmax']} (d+1 = {d + 1}); with bias {r['softmax+bias']} "
         f"(d+2 = {d + 2}); the same at every logit scale of the sweep",
         r["softmax"] == d + 1 and r["softmax+bias"] == d + 2
         and all(row["softmax"] == d + 1 and row["softmax+bias"] == d + 2
                 for row in sweep.values())),
        ("Table 3: sigsoftmax, g:ReLU, g:sigmoid, MoS and MoSS break the d+1 bound",
         "all above 402", ", ".join(f"{n} {r[n]}" for n in others),
         all(r[n] > d + 1 for n in others)),
        ("Table 3: g:ReLU has the highest rank of the single output functions",
         "8243 / 31400 vs sigsoftmax 4640 / 5465",
         f"g:ReLU {r['g:ReLU']}, sigsoftmax {r['sigsoftmax']}, g:sigmoid {r['g:sigmoid']} "
         f"(all at the maximum {min(rank_config['N'], rank_config['M'])}: no ordering)",
         r["g:ReLU"] > max(r["sigsoftmax"], r["g:sigmoid"])),
        ("Table 3: sigsoftmax has a higher rank than g:sigmoid",
         "4640 vs 1304 (PTB), 5465 vs 463 (WT2)",
         f"sigsoftmax {r['sigsoftmax']}, g:sigmoid {r['g:sigmoid']}",
         r["sigsoftmax"] > r["g:sigmoid"]),
        ("Table 3: MoSS has a higher rank than MoS", "9986 vs 9980; 19834 vs 12093",
         f"MoSS {r['MoSS']}, MoS {r['MoS']}", r["MoSS"] > r["MoS"]),
    ]
    for kind in TARGETS:
        f = summary["fits"][kind]
        kl = {name: f[name]["kl"][0] for name in TRAINED}
        claims += [
            (f"Tables 1-2: sigsoftmax fits better than softmax with the same parameters "
             f"({kind} target: lower KL at d = {fd})",
             "test ppl 49.2 vs 50.5 (PTB), 42.9 vs 43.3 (WT2)",
             f"KL {kl['sigsoftmax']:.4f} vs {kl['softmax']:.4f}",
             kl["sigsoftmax"] < kl["softmax"]),
            (f"Tables 1-2: MoSS fits better than MoS ({kind} target)",
             "47.7 vs 48.0 (PTB), 40.3 vs 40.8 (WT2)",
             f"KL {kl['MoSS']:.4f} vs {kl['MoS']:.4f}", kl["MoSS"] < kl["MoS"]),
            (f"Tables 1-2: both mixtures fit better than both single functions ({kind} "
             "target)", "MoS/MoSS 48.0/47.7 vs softmax/sigsoftmax 50.5/49.2 (PTB)",
             f"KL MoS {kl['MoS']:.4f}, MoSS {kl['MoSS']:.4f}; softmax {kl['softmax']:.4f}, "
             f"sigsoftmax {kl['sigsoftmax']:.4f}",
             max(kl["MoS"], kl["MoSS"]) < min(kl["softmax"], kl["sigsoftmax"])),
            (f"Theorem 2 after training ({kind} target): the trained softmax model's "
             "log-outputs have rank <= d+1, the other models' more",
             "(not reported in the paper)",
             ", ".join(f"{n} {f[n]['rank']}" for n in TRAINED) + f" (d+1 = {fd + 1})",
             all(x <= fd + 1 for x in f["softmax"]["rank"])
             and all(x > fd + 1 for n in ("sigsoftmax", "MoS", "MoSS")
                     for x in f[n]["rank"])),
        ]
    summary["claims"] = claims
    summary["sweep_text"] = sweep_text
    return summary


def results_markdown(summary, plots):
    rc, fc = summary["rank_config"], summary["fit_config"]
    d = rc["d"]
    lines = [
        "### Ranks of the log-output matrices (Table 3 at small scale)",
        "",
        f"N = {rc['N']} contexts, M = {rc['M']} classes, d = {d}, K = {rc['K']} "
        f"components, logits z = H W of standard deviation about 2; rank = number of "
        f"singular values above 0.5 sqrt(N+M+1) s_max eps.  Bound for softmax: "
        f"d+1 = {d + 1} (d+2 = {d + 2} with an output bias).",
        "",
        "| output function | measured rank | largest possible | paper, PTB | paper, WT2 |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in FUNCTIONS:
        paper = PAPER_RANKS.get(name, ("-", "-"))
        lines.append(f"| {name} | {summary['ranks'][name]} | {min(rc['N'], rc['M'])} | "
                     f"{paper[0]} | {paper[1]} |")
    lines += ["", "Ranks when the logit scale is changed (W multiplied by the scale):", "",
              "| logit scale | " + " | ".join(FUNCTIONS) + " |",
              "|---" * (len(FUNCTIONS) + 1) + "|"]
    for scale, row in summary["rank_sweep"].items():
        lines.append(f"| {scale} | " + " | ".join(str(row[n]) for n in FUNCTIONS) + " |")
    if "singular_values" in plots:
        lines += ["", f"![singular values]({plots['singular_values']})"]
    lines += [
        "",
        "### Fitting a full-rank target (the bottleneck in numbers)",
        "",
        f"N = {fc['N']} contexts, M = {fc['M']} classes; model hidden size d = {fc['d']} "
        f"(so softmax is capped at rank {fc['d'] + 1}), K = {fc['K']} for the mixtures; "
        f"full-batch Adam, {fc['steps']} steps, learning rate {fc['lr']}; {fc['repeats']} "
        "seed(s), mean ± std.  KL = KL(P* || P_model) in nats per context; perplexity = "
        "exp(cross-entropy to P*), to compare with the target's own perplexity exp(H(P*)).",
        "",
    ]
    for kind in TARGETS:
        fits = summary["fits"][kind]
        first = fits[TRAINED[0]]
        lines += [
            f"Target **{kind}** (rank of log P*: {first['target_rank'][0]}; target "
            f"perplexity {first['target_perplexity'][0]:.3f}):",
            "",
            "| output function | parameters | final KL | perplexity | rank of trained log P "
            "| paper test ppl PTB / WT2 |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name in TRAINED:
            f = fits[name]
            paper = PAPER_TEST_PPL[name]
            lines.append(
                f"| {name} | {f['parameters']} | {f['kl'][0]:.4f} ± {f['kl'][1]:.4f} | "
                f"{f['perplexity'][0]:.3f} | {', '.join(map(str, f['rank']))} | "
                f"{paper[0]} / {paper[1]} |")
        lines.append("")
    if "training" in plots:
        lines += [f"![training curves]({plots['training']})", ""]
    lines += [
        "### The paper's claims against the measurements",
        "",
        "| claim | paper | measured here | reproduced |",
        "|---|---|---|---|",
    ]
    for claim, paper, measured, ok in summary["claims"]:
        lines.append(f"| {claim} | {paper} | {measured} | {'yes' if ok else '**no**'} |")
    return "\n".join(lines) + "\n"


def make_plots(ranks, fits, rank_config, out_dir, prefix=""):
    """PNG plots; {} when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    paths = {}
    d = rank_config["d"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in FUNCTIONS:
        s = ranks[name]["singular_values"]
        ax.semilogy(np.arange(1, s.size + 1), s / s[0],
                    label=f"{name} (rank {ranks[name]['rank']})")
    threshold = 0.5 * math.sqrt(rank_config["N"] + rank_config["M"] + 1) * np.finfo(float).eps
    ax.axhline(threshold, color="black", linestyle=":", linewidth=1)
    ax.axvline(d + 1, color="gray", linestyle="--", linewidth=1)
    ax.text(d + 1, 1e-3, f" d+1 = {d + 1}", color="gray")
    ax.set_xlabel("index i")
    ax.set_ylabel("singular value s_i / s_1")
    ax.set_ylim(1e-19, 2)
    ax.set_title(f"Singular values of the log-output matrix (N={rank_config['N']}, "
                 f"M={rank_config['M']}, d={d}); dotted: rank threshold", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / f"{prefix}singular_values.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths["singular_values"] = path

    fig, axes = plt.subplots(1, len(TARGETS), figsize=(11, 4.2))
    for ax, kind in zip(axes, TARGETS):
        for name in TRAINED:
            curves = np.array([run["curve"] for run in fits[kind][name]])
            ax.semilogy(np.arange(1, curves.shape[1] + 1), curves.mean(axis=0), label=name)
        ax.set_xlabel("Adam step")
        ax.set_ylabel("KL(P* || P_model), nats per context")
        ax.set_title(f"{kind} target", fontsize=10)
        ax.legend()
    fig.tight_layout()
    path = out_dir / f"{prefix}training.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths["training"] = path
    return paths


BEGIN, END = "<!-- results:begin (generated by python -m fastsoft.experiments.bottleneck --write-docs) -->", "<!-- results:end -->"


def write_docs(markdown, docs_dir):
    paper = docs_dir / "paper.md"
    text = paper.read_text() if paper.exists() else "# fastsoft and the sigsoftmax paper\n\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
    else:
        head, tail = text.rstrip("\n") + "\n\n", "\n"
    paper.write_text(f"{head}{BEGIN}\n\n{markdown}\n{END}{tail}")
    return paper


def run(quick=False, seed=0):
    """Run both experiments: (summary, raw rank results, raw fit results).

    Single-threaded (BLAS and fastsoft): the problems are small, and on a busy machine
    threads waiting for each other cost far more than they save.
    """
    from threadpoolctl import threadpool_limits

    config = CONFIGS["quick" if quick else "full"]
    with threadpool_limits(limits=1):
        ranks, sweep = rank_experiment(seed=seed, **config["rank"])
        fits = fit_experiment(seed=seed, **config["fit"])
    return summarize(ranks, sweep, fits, config["rank"], config["fit"]), ranks, fits


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m fastsoft.experiments.bottleneck",
        description="The softmax bottleneck at small scale (Kanai et al., NeurIPS 2018).")
    parser.add_argument("--quick", action="store_true", help="small sizes (CI: < 30 s)")
    parser.add_argument("--out", default="bottleneck_results",
                        help="directory for results.json, results.md and the PNG plots")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-docs", action="store_true",
                        help="also regenerate docs/paper.md's results and docs/paper_*.png "
                             "(source checkout only)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    summary, ranks, fits = run(quick=args.quick, seed=args.seed)
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = make_plots(ranks, fits, summary["rank_config"], out_dir)
    markdown = results_markdown(summary, {k: p.name for k, p in plots.items()})
    (out_dir / "results.md").write_text(markdown)
    (out_dir / "results.json").write_text(json.dumps(
        {**summary, "seconds": time.perf_counter() - started,
         "curves": {kind: {n: [r["curve"] for r in fits[kind][n]] for n in TRAINED}
                    for kind in TARGETS}}, indent=1))
    if args.write_docs:
        docs_dir = pathlib.Path(__file__).resolve().parents[3] / "docs"
        if not docs_dir.is_dir():
            parser.error(f"--write-docs needs a source checkout (no {docs_dir})")
        doc_plots = make_plots(ranks, fits, summary["rank_config"], docs_dir, prefix="paper_")
        write_docs(results_markdown(summary, {k: p.name for k, p in doc_plots.items()}),
                   docs_dir)
    print(markdown)
    if not plots:
        print("(matplotlib is not installed: no plots; pip install 'fastsoft[plot]')")
    print(f"done in {time.perf_counter() - started:.1f} s; results in {out_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
