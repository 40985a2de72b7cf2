"""`mmsearch doctor`: is the setup usable (image model, OCR, data directory, image roots)?"""

from __future__ import annotations

from mmsearch import __version__
from mmsearch.commands.common import JsonFlag, emit, engine, errors, out


def doctor(as_json: JsonFlag = False) -> None:
    """Check the setup: image model, OCR, data directory and datasets."""
    from mmsearch.encoders.ocr import ocr_available

    with errors(as_json):
        mm = engine()
        model = mm.encoder_status()
        ocr_ok, ocr_detail = ocr_available() if mm.settings.ocr else (False, "disabled (MMSEARCH_OCR=false)")
        report = {
            "version": __version__,
            "home": str(mm.settings.home.resolve()),
            "datasets": len(mm.datasets()),
            "model": model,
            "vlm_channel": "available" if model["available"] else "unavailable",
            "ocr": {"available": ocr_ok, "detail": ocr_detail},
            "image_roots": [str(p) for p in mm.settings.image_root_paths],
            "allow_private_networks": mm.settings.allow_private_networks,
        }
    if as_json:
        emit(report)
        return
    mark = {True: "[green]ok[/]", False: "[yellow]unavailable[/]"}
    out.print(f"mmsearch {__version__}, data in {report['home']} ({report['datasets']} datasets)")
    out.print(f"image model  {mark[model['available']]}  {model['model']}"
              + (f"  dim={model['dim']} providers={','.join(model['providers'])}" if model["available"] else ""))
    if not model["available"]:
        out.print(f"             {model['message']}")
        out.print("             the vlm channel is unavailable; the text channel (fields + OCR) still answers")
    out.print(f"OCR          {mark[ocr_ok]}  {ocr_detail}")
    out.print(f"image roots  {', '.join(report['image_roots']) or 'none (local image paths are refused)'}")
