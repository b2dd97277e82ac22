"""`painsearch models [fetch-weights]`: the registry (the paper's Table 3), and ImageNet weights fetched once."""

from __future__ import annotations

import argparse
import json
from pipelines.progress import say


def _models(args: argparse.Namespace) -> int:
    if getattr(args, "models_command", None) == "fetch-weights":
        from pipelines.models.weights import fetch_weights

        written = fetch_weights(args.to, args.models, args.mirror)
        if args.u2net or args.u2net_url:
            from pipelines.preprocess.background import U2NET_FILE, fetch_u2net

            if fetch_u2net(args.to, args.u2net_url):
                written.append(U2NET_FILE)
        say(f"fetch-weights: {len(written)} file(s) written to {args.to}" + (f": {', '.join(written)}" if written else " (all present)"))
        return 0
    from pipelines.models.build import model_table

    rows = model_table(args.classes)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'network':<13}{'input':>7}{'parameters':>14}  pretrained")
    for r in rows:
        print(f"{r['name']:<13}{r['input_size']:>7}{r['parameters']:>14,}  {'ImageNet' if r['pretrained'] else 'no'}")
    return 0


def add(sub) -> None:
    m = sub.add_parser("models", help="the ten networks: input size, parameters, pretrained (Table 3)",
                       description="List the registered networks with Keras's own parameter counts, or fetch their "
                       "ImageNet weights once into a folder that cluster workers read.")
    m.add_argument("--classes", type=int, default=2, help="output classes to count parameters for (default 2)")
    m.add_argument("--json", action="store_true", help="print JSON")
    m.set_defaults(fn=_models)
    msub = m.add_subparsers(dest="models_command", metavar="STEP")
    fw = msub.add_parser("fetch-weights", help="download the ImageNet no-top weights once, where the internet is reachable",
                         description="Download each pretrained network's no-top weights, check them against the md5 "
                         "that Keras publishes, and write them to a folder or s3:// prefix; with --u2net, also the "
                         "U2-Net weights of background removal (checked against rembg's md5), with their sha256 "
                         "beside them, so that `preprocess.u2net_dir` can name the same prefix on every worker.")
    fw.add_argument("--to", required=True, metavar="URI", help="folder or s3://bucket/prefix to fill")
    fw.add_argument("--models", nargs="+", metavar="NAME", help="only these networks (default: all pretrained)")
    fw.add_argument("--from", dest="mirror", default=None, metavar="URL", help="a mirror of Keras's application weights")
    fw.add_argument("--u2net", action="store_true", help="also fetch u2net_human_seg.onnx (background removal)")
    fw.add_argument("--u2net-from", dest="u2net_url", default=None, metavar="URL",
                    help="where to fetch u2net_human_seg.onnx from (implies --u2net; default: rembg's release)")
    fw.set_defaults(fn=_models)
