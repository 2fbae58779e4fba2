# Regenerate with: PYTHON scripts/golden/make_golden_step.py  (from the repo root)
"""Golden values from PyTorch for `tests/golden_step.rs`: one full MEAL step
(`meal::distill::objective::step`) in each adversarial mode, on a tiny real student/teacher set.

Setup (the same on both sides):
- student resnet8, teachers resnet8 and vgg8, 10 classes: the PyTorch twins of the zoo in
  scripts/models/param_counts.py, filled with its deterministic splitmix64/FNV-1a stream, keyed by
  "<prefix><PyTorch module path>.<tensor>" with the prefixes "student.", "teacher0.", "teacher1."
  (so that the two resnet8s differ) and "disc<k>." for the discriminators, with the first k that
  makes them "lively" (see `disc_prefix`; recorded in the JSON), every value rounded to float32;
- a batch of 4 inputs (3x32x32) from the same stream under the key "step.input", float32;
- two matched stages: stage index 2 (resnet8: 64ch 8x8, vgg8: 128ch 4x4) pooled to 16 with
  adaptive avg pooling + channel mean, gamma 0.1, eta 1; the logits, gamma 1, eta 0.5;
- combine = mean-softmax over the two teachers (targets: mean of the softmaxes; D sees the mean of
  the raw outputs), temperature 1, soft cross-entropy, no label term;
- teachers in train mode under no_grad (BatchNorm on batch statistics, the V1 default), the
  student in train mode;
- the reference discriminator (d -> d/2 -> d/4 -> 2, ReLU after every layer including the last),
  as nn.Linear layers (equal to the reference's 1x1 convs, see make_golden.py);
- SGD momentum 0.9, weight decay 5e-4 (shared), student lr 0.1, discriminator lr 0.01.

Modes: joint (sim + adv, one backward, both updated), grl (the same with gradient reversal on the
D input), alternating (a D step on BCE(D([s.detach(); t]), Y), then a student step on
sim + BCE(D'(s), [0,1] rows) with the updated D), none (sim only).

PyTorch computes in float64 from the float32 inputs and weights. To keep the JSON small, every
tensor of the student (parameters and BatchNorm running statistics) is written as the change over
the step, after - before, as {shape, sum, sumsq, sum_abs, samples} (samples at the flat indices
(j*(n-1))//(SAMPLES-1), j = 0..SAMPLES-1) or in full when it has at most FULL elements; the
discriminators' changes, the student features/logits, the teacher targets and the D logits are
written in full. Tensors are keyed and laid out like PyTorch ([out, in] for a Linear weight).

Variants ("variants" in the JSON), each one joint step that changes one thing of the setup above
(its own discriminator prefix, found the same way, since the D inputs differ):
- random_draw: combine = random with the draw given (teacher 1, the vgg8): targets are that
  teacher's softmax and raw output, unweighted;
- eval_teachers: teachers in eval mode (BatchNorm on running statistics, `teacher_bn = "eval"`);
- max_pool: stage features by adaptive max pooling + channel max (`pool = "max"`);
- v2: MEAL V2 as coded (spec 4.1): eval-mode teachers, mean of softmaxes, one discriminator on
  the logits against the mean teacher logits (the divisor-2 layout 10 -> 5 -> 2 -> 2, final ReLU),
  gamma = eta = 1, weight decay 0, lr = d_lr = 0.01;
- d_lr_schedule: ONE SGD over two parameter groups (student lr 0.1, discriminators d_lr 0.01) as
  the V1 reference builds it, with MultiStepLR(milestones=[1], gamma=0.1) stepped once (epoch
  1): every group decays, so the step runs at lr 0.01 and d_lr 0.001.
"""

import math
import os
import sys
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models"))

from make_golden import GradReverse, arr, f32, write  # noqa: E402
from param_counts import ARCHS, tensors, uniform  # noqa: E402

CLASSES = 10
BATCH = 4
STUDENT = "resnet8"
TEACHERS = ["resnet8", "vgg8"]
# index, pooled length (None = the logits), gamma, eta
STAGES = [(2, 16, 0.1, 1.0), (-1, None, 1.0, 0.5)]
LR, D_LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.01, 0.9, 5e-4
MODES = ["joint", "grl", "alternating", "none"]
SAMPLES = 8
FULL = 128
# Smallest |pre-activation| allowed in the discriminators (see `lively`).
MARGIN = 1e-3


def fill(model, prefix):
    """param_counts.fill with a key prefix, every value rounded to float32 (what burn holds)."""
    with torch.no_grad():
        for key, m, name, t in tensors(model):
            r = uniform(prefix + key, t.numel()).reshape(tuple(t.shape))
            if isinstance(m, nn.BatchNorm2d):
                v = {"weight": 1 + 0.1 * r, "bias": 0.1 * r, "running_mean": 0.1 * r,
                     "running_var": 1.25 + 0.25 * r}[name]
            elif name == "weight":
                v = r * math.sqrt(6.0 / (t.numel() // t.shape[0]))
            else:
                v = 0.1 * r
            t.copy_(f32(torch.from_numpy(v)))


class Discriminator(nn.Module):
    """The reference discriminator (final ReLU kept); attribute names mirror the Rust fields."""

    def __init__(self, d):
        super().__init__()
        half = d // 2
        self.layers = nn.ModuleList([nn.Linear(d, half), nn.Linear(half, half // 2), nn.Linear(half // 2, 2)])

    def forward(self, x):
        for layer in self.layers:
            x = F.relu(layer(x))
        return x


class Discriminators(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.list = nn.ModuleList([Discriminator(d) for d in dims])


def build(arch, prefix):
    model = ARCHS[arch](CLASSES).double()
    fill(model, prefix)
    return model


def extract(out, index, out_dim, pool="avg"):
    """MEAL's matched output: the logits, or stage `index` as (B, C, H*W) -> adaptive avg pool
    to out_dim -> channel mean (max: adaptive max pool -> channel max)."""
    stages, logits = out
    if out_dim is None:
        return logits
    x = stages[index]
    b, c, h, w = x.shape
    v = x.reshape(b, c, h * w)
    if pool == "max":
        return F.adaptive_max_pool1d(v, out_dim).max(dim=1)[0]
    return F.adaptive_avg_pool1d(v, out_dim).mean(dim=1)


def soft_ce(s, probs):
    return -(probs * F.log_softmax(s, dim=1)).sum() / s.shape[0]


def d_targets(batch):
    return torch.tensor([[1.0, 0.0]] * batch + [[0.0, 1.0]] * batch, dtype=torch.float64)


def accuracy(logits, batch):
    """(accuracy on the student rows, on the teacher rows); a tie counts as the student class."""
    pred = (logits[:, 1] > logits[:, 0]).to(torch.float64)
    return (1.0 - pred[:batch]).mean().item(), pred[batch:].mean().item()


def snapshot(model):
    return {key: t.detach().clone() for key, _, _, t in tensors(model)}


def summary(delta):
    flat = delta.reshape(-1)
    n = flat.numel()
    if n <= FULL:
        return {"shape": list(delta.shape), "data": [float(v) for v in flat.tolist()]}
    idx = [(j * (n - 1)) // (SAMPLES - 1) for j in range(SAMPLES)]
    return {
        "shape": list(delta.shape),
        "sum": flat.sum().item(),
        "sumsq": (flat * flat).sum().item(),
        "sum_abs": flat.abs().sum().item(),
        "samples": [flat[i].item() for i in idx],
    }


def inputs():
    return f32(torch.from_numpy(uniform("step.input", BATCH * 3 * 32 * 32)).reshape(BATCH, 3, 32, 32))


# The base setup; every variant overrides some of it.
BASE = dict(chosen=None, teacher_bn="train", pool="avg", stages=STAGES, lr=LR, d_lr=D_LR,
            weight_decay=WEIGHT_DECAY, milestone_passed=False)
VARIANTS = {
    "random_draw": dict(chosen=1),
    "eval_teachers": dict(teacher_bn="eval"),
    "max_pool": dict(pool="max"),
    "v2": dict(teacher_bn="eval", stages=[(-1, None, 1.0, 1.0)], lr=0.01, d_lr=0.01, weight_decay=0.0),
    "d_lr_schedule": dict(milestone_passed=True),
}


def targets(x, v=BASE):
    """Per stage: (raw, probs) of the teachers `v` chooses: all, equally weighted (mean of
    softmaxes; raw = mean output), or the one drawn, unweighted."""
    teachers = [build(arch, f"teacher{k}.") for k, arch in enumerate(TEACHERS)]
    if v["chosen"] is not None:
        teachers = [teachers[v["chosen"]]]
    raws, probs = [], []
    with torch.no_grad():
        outs = [(t.eval() if v["teacher_bn"] == "eval" else t.train())(x) for t in teachers]
        for index, out_dim, _, _ in v["stages"]:
            r = [extract(o, index, out_dim, v["pool"]) for o in outs]
            w = 1.0 / len(r)
            raws.append(sum(w * f for f in r))
            probs.append(sum(w * F.softmax(f, dim=1) for f in r))
    return raws, probs


def build_discs(prefix, stages=STAGES):
    discs = Discriminators([CLASSES if out_dim is None else out_dim for _, out_dim, _, _ in stages]).double()
    fill(discs, prefix)
    return discs


def lively(discs, feats, raws):
    """Whether every discriminator passes a gradient to every student row, with no ReLU input
    closer than MARGIN to its kink (where float32 and float64 could take different branches)."""
    y = d_targets(BATCH)
    for d, f, t in zip(discs.list, feats, raws):
        inp = torch.cat([f.detach(), t], 0).requires_grad_(True)
        x = inp
        for layer in d.layers:
            z = layer(x)
            if z.abs().min().item() < MARGIN:
                return False
            x = F.relu(z)
        F.binary_cross_entropy_with_logits(x, y).backward()
        if (inp.grad[:BATCH].abs().sum(dim=1) == 0).any():
            return False
    return True


def disc_prefix(x, v=BASE):
    """The first "disc<k>." whose discriminators are lively on the initial student features: with
    the shared fill, small discriminators with a final ReLU are often dead (all outputs 0), which
    would leave the adversarial gradient untested."""
    student = build(STUDENT, "student.").train()
    out = student(x)
    feats = [extract(out, index, out_dim, v["pool"]).detach() for index, out_dim, _, _ in v["stages"]]
    raws, _ = targets(x, v)
    for k in range(1000):
        prefix = f"disc{k}."
        if lively(build_discs(prefix, v["stages"]), feats, raws):
            return prefix
    raise RuntimeError("no lively discriminator prefix")


def step(mode, x, raws, probs, prefix, v=BASE):
    stages = v["stages"]
    student = build(STUDENT, "student.").train()
    discs = build_discs(prefix, stages)
    before_s, before_d = snapshot(student), snapshot(discs)
    sgd = dict(momentum=MOMENTUM, weight_decay=v["weight_decay"])
    # One optimizer, one group per side, as the V1 reference; its scheduler decays every group.
    opt = torch.optim.SGD([{"params": student.parameters(), "lr": v["lr"]},
                           {"params": discs.parameters(), "lr": v["d_lr"]}], **sgd)
    if v["milestone_passed"]:
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[1], gamma=0.1)
        with warnings.catch_warnings():  # stepped before any update on purpose, as V1 does
            warnings.simplefilter("ignore")
            sched.step()
    lrs = [g["lr"] for g in opt.param_groups]
    # The modes that update one side at a time step the optimizer with the other side's
    # gradients absent (SGD skips parameters without a gradient).
    opt_s = opt_d = opt

    out = student(x)
    feats = [extract(out, index, out_dim, v["pool"]) for index, out_dim, _, _ in stages]
    sim = sum(g * soft_ce(f, p) for f, p, (_, _, g, _) in zip(feats, probs, stages))
    y = d_targets(BATCH)
    result = {"sim": sim.item(), "adv": 0.0, "d_acc_student": 0.0, "d_acc_teacher": 0.0,
              "lr": lrs[0], "d_lr": lrs[1]}
    d_logits = []
    if mode == "none":
        sim.backward()
        opt_s.step()
    else:
        adv = 0.0
        for d, f, t, (_, _, _, eta) in zip(discs.list, feats, raws, stages):
            inp = torch.cat([f.detach() if mode == "alternating" else f, t], 0)
            if mode == "grl":
                inp = GradReverse.apply(inp)
            z = d(inp)
            d_logits.append(z.detach().clone())
            adv = adv + eta * F.binary_cross_entropy_with_logits(z, y)
        accs = [accuracy(z, BATCH) for z in d_logits]
        result["adv"] = adv.item()
        result["d_acc_student"] = sum(a for a, _ in accs) / len(accs)
        result["d_acc_teacher"] = sum(b for _, b in accs) / len(accs)
        if mode == "alternating":
            adv.backward()
            assert all(p.grad is None for p in student.parameters()), "D step reached the student"
            opt_d.step()
            opt_d.zero_grad(set_to_none=True)
            fool = 0.0
            for d, f, (_, _, _, eta) in zip(discs.list, feats, stages):
                fool = fool + eta * F.binary_cross_entropy_with_logits(d(f), y[BATCH:])
            result["fool"] = fool.item()
            (sim + fool).backward()
            for p in discs.parameters():  # the student step leaves D as the D step left it
                p.grad = None
            opt_s.step()
        else:
            (sim + adv).backward()
            opt.step()
    after_s, after_d = snapshot(student), snapshot(discs)
    result["student"] = {k: summary(after_s[k] - before_s[k]) for k in before_s}
    if mode != "none":  # the Rust side builds no discriminators then
        result["discs"] = {k: arr(after_d[k] - before_d[k]) for k in before_d}
    common = {
        "targets": [{"raw": arr(r), "probs": arr(p)} for r, p in zip(raws, probs)],
        "student_features": [arr(f) for f in feats],
        "d_logits": [arr(z) for z in d_logits],
    }
    return result, common


def main():
    torch.set_num_threads(1)
    x = inputs()
    raws, probs = targets(x)
    prefix = disc_prefix(x)
    golden = {
        "config": {
            "student": STUDENT,
            "teachers": TEACHERS,
            "classes": CLASSES,
            "batch": BATCH,
            "stages": [{"index": i, "out_dim": o, "gamma": g, "eta": e} for i, o, g, e in STAGES],
            "lr": LR,
            "d_lr": D_LR,
            "momentum": MOMENTUM,
            "weight_decay": WEIGHT_DECAY,
            "samples": SAMPLES,
            "full": FULL,
            "disc_prefix": prefix,
        },
        "targets": [{"raw": arr(r), "probs": arr(p)} for r, p in zip(raws, probs)],
        "modes": {},
    }
    for mode in MODES:
        result, common = step(mode, x, raws, probs, prefix)
        golden["modes"][mode] = result
        if mode == "joint":
            golden["student_features"] = common["student_features"]
            golden["d_logits"] = common["d_logits"]
        print(f"{mode}: sim {result['sim']:.6f} adv {result['adv']:.6f} "
              f"acc {result['d_acc_student']:.2f}/{result['d_acc_teacher']:.2f}")
    golden["variants"] = {}
    for name, over in VARIANTS.items():
        v = {**BASE, **over}
        vraws, vprobs = targets(x, v)
        vprefix = disc_prefix(x, v)
        result, common = step("joint", x, vraws, vprobs, vprefix, v)
        result["disc_prefix"] = vprefix
        result["weight_decay"] = v["weight_decay"]
        result["targets"] = common["targets"]
        result["student_features"] = common["student_features"]
        result["d_logits"] = common["d_logits"]
        golden["variants"][name] = result
        print(f"{name}: sim {result['sim']:.6f} adv {result['adv']:.6f} "
              f"acc {result['d_acc_student']:.2f}/{result['d_acc_teacher']:.2f} "
              f"lr {result['lr']:g} d_lr {result['d_lr']:g} ({vprefix})")
    write("step.json", golden)


if __name__ == "__main__":
    main()
