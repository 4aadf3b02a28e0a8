"""`fleet place`: where a workload should run, with the reasoning."""

from __future__ import annotations

import argparse

from tools.market.flow import run_place
from tools.verbs.offers import add_source_options


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "place",
        help="where a workload should run, with the reasoning",
        description="Pick the cheapest feasible offer for a workload: enough VRAM per card, the "
        "model, provider and price cap asked for, reliability of at least 90 %%, not sold out, "
        "from a provider that answers, on hardware that runs the workload's runtime (CUDA "
        "unless --runtime says otherwise). Prints the choice, the runner-up and why. Same sources "
        "as `fleet offers`. Exit code 1, with the reason, when nothing fits.",
        epilog="examples:\n  fleet place --vram 40\n  fleet place --vram 80 --gpu H100 "
        "--max-usd-per-hour 3\n  fleet place --vram 24 --provider runpod --json\n"
        "  fleet place --vram 64 --runtime metal",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--vram", type=float, required=True, metavar="GB", help="VRAM per card, GB")
    p.add_argument("--gpu", metavar="MODEL", help="GPU model: H100, A100-80GB, RTX4090, ...")
    p.add_argument("--gpus", type=int, metavar="N", help="GPUs in one unit at least N")
    p.add_argument("--provider", metavar="P", help="only this provider")
    p.add_argument("--max-usd-per-hour", type=float, metavar="X", help="price cap, USD/h")
    p.add_argument(
        "--runtime",
        choices=["cuda", "rocm", "metal", "any"],
        default="cuda",
        help="the GPU stack the workload is built for (default: cuda, what most model "
        "servers and PyTorch wheels ship for; offers that cannot run it are left out; "
        "`any` takes Apple, AMD and CPU offers too)",
    )
    add_source_options(p)
    p.set_defaults(func=run_place)
