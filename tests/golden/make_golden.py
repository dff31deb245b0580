"""Regenerate the golden optimizer trajectories from the PyTorch references.

Needs torch 2.13.0 and torch-optimizer 0.3.0, which are not jdl dependencies; from the
repository root:

    python tests/golden/make_golden.py

with a Python that has both installed. It writes, next to this file,

* ``optim_cases.json``: for each case, the jdl optimizer, its keyword arguments, the reference
  and the hyper-parameters the reference actually used (its defaults filled in), in jdl's names;
* ``optim_trajectories.npz``: for each case and parameter, the float64 trajectory of shape
  ``(STEPS + 1, *shape)`` (row 0 is the initial value).

The objective (mirrored in tests/optim/test_parity.py) is non-quadratic: a soft Rosenbrock chain
over the 7 entries z of two parameter tensors of shapes (2, 2) and (3,), plus log-sum-exp(z).
"""

import json
import pathlib

import numpy as np
import torch
import torch_optimizer

STEPS = 100
HERE = pathlib.Path(__file__).resolve().parent
INIT = {
    "a": [[0.5, -0.3], [0.8, -1.2]],
    "b": [1.5, -0.7, 0.2],
}

# case name -> (jdl optimizer, jdl keyword arguments, reference); see reference_optimizer().
CASES = {
    "sgd": ("sgd", {"learning_rate": 0.01}, "torch.optim.SGD"),
    "sgd_time_constant_decay": (
        "sgd",
        {"learning_rate": {"time_constant_decay": {"init_value": 0.02, "tau": 10.0}}},
        "torch.optim.SGD + LambdaLR(tau / max(t, tau))",
    ),
    "momentum": ("momentum", {"learning_rate": 0.005}, "torch.optim.SGD(momentum=0.9)"),
    "momentum_0.5": (
        "momentum",
        {"learning_rate": 0.01, "momentum": 0.5},
        "torch.optim.SGD(momentum=0.5)",
    ),
    "nesterov": ("nesterov", {"learning_rate": 0.005}, "torch.optim.SGD(nesterov=True)"),
    "nesterov_0.7": (
        "nesterov",
        {"learning_rate": 0.01, "momentum": 0.7},
        "torch.optim.SGD(momentum=0.7, nesterov=True)",
    ),
    "adagrad": ("adagrad", {"learning_rate": 0.1}, "torch.optim.Adagrad"),
    "adagrad_init": (
        "adagrad",
        {"learning_rate": 0.1, "eps": 1e-3, "initial_accumulator_value": 0.5},
        "torch.optim.Adagrad(initial_accumulator_value=0.5, eps=1e-3)",
    ),
    "adadelta": ("adadelta", {}, "torch.optim.Adadelta"),
    "adadelta_custom": (
        "adadelta",
        {"learning_rate": 20.0, "rho": 0.8, "eps": 1e-4},
        "torch.optim.Adadelta(lr=20, rho=0.8, eps=1e-4)",
    ),
    "adam": ("adam", {"learning_rate": 0.01}, "torch.optim.Adam"),
    "adam_custom": (
        "adam",
        {"learning_rate": 0.02, "b1": 0.8, "b2": 0.99, "eps": 1e-3},
        "torch.optim.Adam(betas=(0.8, 0.99), eps=1e-3)",
    ),
    "adamax": ("adamax", {"learning_rate": 0.01}, "torch.optim.Adamax"),
    "adamax_custom": (
        "adamax",
        {"learning_rate": 0.02, "b1": 0.8, "b2": 0.9, "eps": 1e-2},
        "torch.optim.Adamax(betas=(0.8, 0.9), eps=1e-2)",
    ),
    "nadam": ("nadam", {"learning_rate": 0.01}, "torch.optim.NAdam"),
    "nadam_custom": (
        "nadam",
        {"learning_rate": 0.02, "b1": 0.85, "b2": 0.99, "eps": 1e-4, "momentum_decay": 0.1},
        "torch.optim.NAdam(betas=(0.85, 0.99), eps=1e-4, momentum_decay=0.1)",
    ),
    "amsgrad": ("amsgrad", {"learning_rate": 0.01}, "torch.optim.Adam(amsgrad=True)"),
    "amsgrad_custom": (
        "amsgrad",
        {"learning_rate": 0.03, "b1": 0.5, "b2": 0.9, "eps": 1e-4},
        "torch.optim.Adam(amsgrad=True, betas=(0.5, 0.9), eps=1e-4)",
    ),
    "adamw": ("adamw", {"learning_rate": 0.01}, "torch.optim.AdamW"),
    "adamw_custom": (
        "adamw",
        {"learning_rate": 0.02, "b1": 0.8, "b2": 0.99, "eps": 1e-3, "weight_decay": 0.5},
        "torch.optim.AdamW(betas=(0.8, 0.99), eps=1e-3, weight_decay=0.5)",
    ),
    "adamw_mask": (
        "adamw",
        {"learning_rate": 0.02, "weight_decay": 0.5, "mask": {"a": True, "b": False}},
        "torch.optim.AdamW with weight_decay=0.5 on a only (two parameter groups)",
    ),
    "qhm": ("qhm", {"learning_rate": 0.01}, "torch_optimizer.QHM(momentum=0.999, nu=0.7)"),
    "qhm_custom": (
        "qhm",
        {"learning_rate": 0.02, "momentum": 0.9, "nu": 0.4},
        "torch_optimizer.QHM(momentum=0.9, nu=0.4)",
    ),
    "qhadam": (
        "qhadam",
        {"learning_rate": 0.01},
        "torch_optimizer.QHAdam(betas=(0.995, 0.999), nus=(0.7, 1.0))",
    ),
    "qhadam_custom": (
        "qhadam",
        {"learning_rate": 0.02, "b1": 0.9, "b2": 0.99, "nu1": 0.5, "nu2": 0.8, "eps": 1e-4},
        "torch_optimizer.QHAdam(betas=(0.9, 0.99), nus=(0.5, 0.8), eps=1e-4)",
    ),
    "aggmo": ("aggmo", {"learning_rate": 0.005}, "torch_optimizer.AggMo(betas=(0, 0.9, 0.99))"),
    "aggmo_custom": (
        "aggmo",
        {"learning_rate": 0.01, "betas": [0.5, 0.8]},
        "torch_optimizer.AggMo(betas=(0.5, 0.8))",
    ),
    "aggmo_duplicate": (
        "aggmo",
        {"learning_rate": 0.005, "betas": [0.9, 0.9, 0.5]},
        "independent buffers per beta (torch_optimizer.AggMo shares them: wrong)",
    ),
}


def objective(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Soft Rosenbrock chain plus log-sum-exp over z = (a.ravel(), b)."""
    z = torch.cat([a.reshape(-1), b])
    chain = torch.sum((1 - z[:-1]) ** 2 + 2 * (z[1:] - z[:-1] ** 2) ** 2)
    return chain + torch.logsumexp(z, dim=0)


class IndependentAggMo(torch.optim.Optimizer):
    """AggMo with one buffer per beta, also for equal betas: buf_i = beta_i buf_i + g."""

    def __init__(self, params, lr, betas):
        super().__init__(params, {"lr": lr, "betas": tuple(betas)})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            betas = group["betas"]
            for p in group["params"]:
                buffers = self.state[p].setdefault("buffers", [torch.zeros_like(p) for _ in betas])
                for buf, beta in zip(buffers, betas, strict=True):
                    buf.mul_(beta).add_(p.grad)
                p.sub_(torch.stack(buffers).sum(0), alpha=group["lr"] / len(betas))


def reference_optimizer(name: str, kwargs: dict, params: list[torch.Tensor]):
    """The PyTorch optimizer (and scheduler, or None) that a case is compared with."""
    kw = dict(kwargs)
    lr = kw.pop("learning_rate", 1.0)
    if isinstance(lr, dict):
        spec = lr["time_constant_decay"]
        opt = torch.optim.SGD(params, lr=spec["init_value"])
        tau = spec["tau"]
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda t: tau / max(t, tau))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr), None
    if name in ("momentum", "nesterov"):
        mom = kw.get("momentum", 0.9)
        return torch.optim.SGD(params, lr=lr, momentum=mom, nesterov=name == "nesterov"), None
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, **kw), None
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, **kw), None
    if name == "qhm":
        return torch_optimizer.QHM(
            params, lr=lr, momentum=kw.get("momentum", 0.999), nu=kw.get("nu", 0.7)
        ), None
    if name == "qhadam":
        return torch_optimizer.QHAdam(
            params,
            lr=lr,
            betas=(kw.get("b1", 0.995), kw.get("b2", 0.999)),
            nus=(kw.get("nu1", 0.7), kw.get("nu2", 1.0)),
            eps=kw.get("eps", 1e-8),
        ), None
    if name == "aggmo":
        betas = tuple(kw.get("betas", (0.0, 0.9, 0.99)))
        if len(set(betas)) < len(betas):
            return IndependentAggMo(params, lr=lr, betas=betas), None
        return torch_optimizer.AggMo(params, lr=lr, betas=betas), None
    adam_kw = {"betas": (kw.pop("b1", 0.9), kw.pop("b2", 0.999)), **kw}
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, **adam_kw), None
    if name == "amsgrad":
        return torch.optim.Adam(params, lr=lr, amsgrad=True, **adam_kw), None
    if name == "adamax":
        return torch.optim.Adamax(params, lr=lr, **adam_kw), None
    if name == "nadam":
        return torch.optim.NAdam(params, lr=lr, **adam_kw), None
    if name == "adamw":
        mask = adam_kw.pop("mask", None)
        if mask is None:
            return torch.optim.AdamW(params, lr=lr, **adam_kw), None
        wd = adam_kw.pop("weight_decay", 1e-2)
        groups = [
            {"params": [p], "weight_decay": wd if mask[k] else 0.0}
            for k, p in zip(INIT, params, strict=True)
        ]
        return torch.optim.AdamW(groups, lr=lr, **adam_kw), None
    raise ValueError(f"no reference for {name}")


# jdl argument -> how to read it from the reference's first parameter group
READ = {
    "learning_rate": lambda g: g["lr"],
    "momentum": lambda g: g["momentum"],
    "eps": lambda g: g["eps"],
    "initial_accumulator_value": lambda g: g["initial_accumulator_value"],
    "rho": lambda g: g["rho"],
    "b1": lambda g: g["betas"][0],
    "b2": lambda g: g["betas"][1],
    "momentum_decay": lambda g: g["momentum_decay"],
    "weight_decay": lambda g: g["weight_decay"],
    "nu": lambda g: g["nu"],
    "nu1": lambda g: g["nus"][0],
    "nu2": lambda g: g["nus"][1],
    "betas": lambda g: list(g["betas"]),
}
ARGUMENTS = {
    "sgd": ["learning_rate"],
    "momentum": ["learning_rate", "momentum"],
    "nesterov": ["learning_rate", "momentum"],
    "adagrad": ["learning_rate", "eps", "initial_accumulator_value"],
    "adadelta": ["learning_rate", "rho", "eps"],
    "adam": ["learning_rate", "b1", "b2", "eps"],
    "adamax": ["learning_rate", "b1", "b2", "eps"],
    "nadam": ["learning_rate", "b1", "b2", "eps", "momentum_decay"],
    "amsgrad": ["learning_rate", "b1", "b2", "eps"],
    "adamw": ["learning_rate", "b1", "b2", "eps", "weight_decay"],
    "qhm": ["learning_rate", "momentum", "nu"],
    "qhadam": ["learning_rate", "b1", "b2", "nu1", "nu2", "eps"],
    "aggmo": ["learning_rate", "betas"],
}


def trajectory(name: str, kwargs: dict) -> tuple[dict[str, np.ndarray], dict]:
    """The reference's trajectory and the hyper-parameters it used, in jdl's names."""
    params = [torch.tensor(INIT[k], dtype=torch.float64, requires_grad=True) for k in INIT]
    opt, scheduler = reference_optimizer(name, kwargs, params)
    used = {k: READ[k](opt.param_groups[0]) for k in ARGUMENTS[name]}
    rows = {k: [p.detach().numpy().copy()] for k, p in zip(INIT, params, strict=True)}
    for _ in range(STEPS):
        opt.zero_grad()
        objective(*params).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        for k, p in zip(INIT, params, strict=True):
            rows[k].append(p.detach().numpy().copy())
    return {k: np.stack(v) for k, v in rows.items()}, used


def main() -> None:
    torch.set_default_dtype(torch.float64)
    arrays = {}
    cases = {}
    for case, (name, kwargs, reference) in CASES.items():
        rows, used = trajectory(name, kwargs)
        for k, v in rows.items():
            if not np.all(np.isfinite(v)):
                raise RuntimeError(f"{case}: non-finite trajectory")
            arrays[f"{case}/{k}"] = v
        cases[case] = {
            "optimizer": name,
            "kwargs": kwargs,
            "reference": reference,
            "reference_hyperparameters": used,
        }
    meta = {
        "steps": STEPS,
        "torch": torch.__version__,
        "torch_optimizer": torch_optimizer.__version__,
        "cases": cases,
    }
    (HERE / "optim_cases.json").write_text(json.dumps(meta, indent=1) + "\n")
    np.savez_compressed(HERE / "optim_trajectories.npz", **arrays)


if __name__ == "__main__":
    main()
