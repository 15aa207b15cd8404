#!/usr/bin/env python
"""Trains the demo model (a narrow SD1.5-layout UNet) and the scene classifier on procedural landscapes.

    python scripts/train_demo_model.py [--steps 700] [--out assets/weights] [--comfyui PATH]

Writes OUT/sync_canvas_demo_unet.safetensors (the narrow UNet's EMA weights, float16; see
scripts/demo_model.py for how it becomes an ordinary SD1.5 checkpoint) and
OUT/sync_canvas_demo_classifier.safetensors (the benchmark's scene classifier).

What it learns: eps-prediction on SD1.5's discrete schedule (scaled-linear betas 0.00085..0.012, 1000
steps), 32x32 latents (256x256 pixels) of the five scene classes of assets/landscapes.py, conditioned on
the written-down CLIP's encoding of prompts that name the class among filler words; 10% empty prompts
for classifier-free guidance. Min-SNR-5 loss weighting, AdamW at a constant rate after warm-up, EMA.
Single-threaded and seeded: the same torch version gives the same weights. ComfyUI is needed only for
CLIP's tokenizer.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import sys
import time

import torch
import torch.nn.functional as F

REPO = pathlib.Path(__file__).resolve().parents[1]
UNET_FILE = "sync_canvas_demo_unet.safetensors"
CLASSIFIER_FILE = "sync_canvas_demo_classifier.safetensors"

FILLERS = ("a", "photo", "of", "the", "beautiful", "landscape", "panorama", "wide", "view", "painting",
           "scenic", "high", "quality", "detailed", "sunny", "day", "sky", "with", "and", "in", "at",
           "wallpaper", "8k", "hd", "realistic", "art", "nature", "under", "clouds", "sun", "horizon",
           "distant", "far", "bright", "colorful", "calm", "quiet", "vast", "blurry", "low", "ugly",
           "watermark", "text", "bad", "worst", "lowres", "jpeg", "artifacts", "360", "equirectangular",
           "cinematic", "golden", "hour", "morning", "evening", "epic", "fantasy", "matte", "scene")
TEMPLATES = ("{w}", "a {w}", "a {w} landscape", "a photo of a {w}", "{w}, wide panorama",
             "a painting of the {w}", "{f} {w} {f}", "{w} {f} {f}", "{f} {f} {w}")


def _load(name, path):
    if name in sys.modules:  # loaded already (e.g. by benchmarks/bench_quality.py): one copy of its classes
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


dm = _load("sync_canvas_demo_model", REPO / "scripts" / "demo_model.py")
landscapes = _load("sync_canvas_landscapes", REPO / "assets" / "landscapes.py")


def tokenizer(comfyui_path: pathlib.Path):
    sys.path.insert(0, str(comfyui_path))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # before comfy.model_management picks a device
    from comfy.sd1_clip import SDTokenizer

    tok = SDTokenizer()
    return lambda text: [t[0] for t in tok.tokenize_with_weights(text)[0]]


def prompt_pool(tokenize, gen: torch.Generator, per_class: int = 60, unconditional: int = 40):
    """(ids (P, 77), classes (P,) with -1 for prompts naming no class)."""
    def pick(seq):
        return seq[int(torch.randint(len(seq), (1,), generator=gen))]

    texts, labels = [], []
    for k, name in enumerate(landscapes.CLASSES):
        for _ in range(per_class):
            template = pick(TEMPLATES)
            text = template.replace("{w}", pick(landscapes.CLASS_WORDS[name]))
            while "{f}" in text:
                text = text.replace("{f}", pick(FILLERS), 1)
            extra = int(torch.randint(4, (1,), generator=gen))
            text = text + "".join(", " + pick(FILLERS) for _ in range(extra))
            texts.append(text)
            labels.append(k)
    texts.append("")
    labels.append(-1)
    for _ in range(unconditional):
        n = 1 + int(torch.randint(6, (1,), generator=gen))
        texts.append(" ".join(pick(FILLERS) for _ in range(n)))
        labels.append(-1)
    ids = torch.tensor([tokenize(t) for t in texts])
    return ids, torch.tensor(labels), texts


def training_latents(classes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Model-space latents (B, 4, 32, 32) of fresh scenes: 8x8 block colours of 256^2 scenes, via 128^2 renders."""
    blocks = F.avg_pool2d(landscapes.render(classes, 128, 128, gen), 4)
    return dm.LATENT_SCALE * dm.block_colours_to_latent(blocks)


def alphas_cumprod() -> torch.Tensor:
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


def train_classifier(gen: torch.Generator, steps: int, log) -> torch.nn.Module:
    """Scene classifier on rendered 32x32 block colours, with noise and blur so sampled images classify too."""
    net = dm.SceneClassifier(len(landscapes.CLASSES))
    opt = torch.optim.AdamW(net.parameters(), 3e-3)
    for step in range(steps):
        classes = landscapes.sample_classes(64, gen)
        rgb = F.avg_pool2d(landscapes.render(classes, 128, 128, gen), 4)
        if step % 2:
            rgb = F.avg_pool2d(F.pad(rgb, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        rgb = (rgb + 0.05 * torch.rand(64, 1, 1, 1, generator=gen) * torch.randn(rgb.shape, generator=gen)).clamp(0, 1)
        loss = F.cross_entropy(net(rgb), classes)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"classifier step {step} loss {loss.item():.4f}")
    return net.eval()


def zero_init_outputs(net: torch.nn.Module) -> None:
    """As Stable Diffusion does: residual branches' last layers and the output conv start at zero."""
    with torch.no_grad():
        for name, module in net.named_modules():
            if name.endswith("out_layers.3") or name.endswith("proj_out") or name == "out.2":
                module.weight.zero_()
                module.bias.zero_()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=700)  # the shipped weights: 700 steps (metadata "steps")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classifier-steps", type=int, default=600)
    parser.add_argument("--save-every", type=int, default=100)
    parser.add_argument("--out", type=pathlib.Path, default=REPO / "assets" / "weights")
    parser.add_argument("--comfyui", type=pathlib.Path, default=os.environ.get("COMFYUI_PATH"))
    args = parser.parse_args(argv)
    if args.comfyui is None:
        parser.error("set COMFYUI_PATH or pass --comfyui PATH (CLIP's tokenizer comes from it)")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - start:7.1f}s] {msg}", flush=True)

    from safetensors.torch import save_file

    args.out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(args.seed)
    ids, labels, texts = prompt_pool(tokenizer(args.comfyui), gen)
    table = dm.clip_token_embeddings()
    contexts = dm.encode_token_ids(ids, table)
    uncond = torch.nonzero(labels < 0).flatten()
    by_class = [torch.nonzero(labels == k).flatten() for k in range(len(landscapes.CLASSES))]
    log(f"{len(texts)} prompts, e.g. {texts[0]!r}, {texts[61]!r}, {texts[-1]!r}")

    classifier = train_classifier(gen, args.classifier_steps, log)
    save_file({k: v.contiguous() for k, v in classifier.state_dict().items()}, str(args.out / CLASSIFIER_FILE),
              metadata={"classes": ",".join(landscapes.CLASSES), "seed": str(args.seed)})

    net = dm.NarrowUNet(dm.WIDTH)
    zero_init_outputs(net)
    ema = {k: v.detach().clone() for k, v in net.state_dict().items()}
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    acp = alphas_cumprod()
    snr = acp / (1 - acp)
    log(f"UNet width {dm.WIDTH}: {sum(p.numel() for p in net.parameters())} parameters")

    def save(step):
        state = {k: v.to(torch.float16).contiguous() for k, v in ema.items()}
        partial = args.out / (UNET_FILE + ".partial")
        save_file(state, str(partial), metadata={"steps": str(step), "batch": str(args.batch), "seed": str(args.seed),
                                                 "width": str(dm.WIDTH), "train_seconds": f"{time.perf_counter() - start:.0f}"})
        os.replace(partial, args.out / UNET_FILE)
        log(f"saved EMA weights at step {step}")

    running = None
    for step in range(1, args.steps + 1):
        classes = landscapes.sample_classes(args.batch, gen)
        x0 = training_latents(classes, gen)
        pick = torch.randint(1 << 30, (args.batch,), generator=gen)
        drop = torch.rand(args.batch, generator=gen) < 0.1
        prompt = torch.stack([uncond[pick[i] % len(uncond)] if drop[i] else by_class[classes[i]][pick[i] % len(by_class[classes[i]])]
                              for i in range(args.batch)])
        t = torch.randint(1000, (args.batch,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = acp[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        weight = (snr[t].clamp(max=5.0) / snr[t]).view(-1, 1, 1, 1)  # min-SNR-5 for eps-prediction
        loss = (weight * (net(xt, t.float(), contexts[prompt]) - noise) ** 2).mean()
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, step / 50)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        decay = min(0.995, (1 + step) / (10 + step))
        with torch.no_grad():
            for k, v in net.state_dict().items():
                ema[k].mul_(decay).add_(v, alpha=1 - decay)
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if step % 20 == 0:
            log(f"step {step}/{args.steps} loss {running:.4f}")
        if step % args.save_every == 0 or step == args.steps:
            save(step)
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
