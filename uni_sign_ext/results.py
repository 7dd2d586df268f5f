"""The final evaluation's numbers as JSON in --output_dir, so scripts and tests read numbers, not logs."""
import json
from pathlib import Path

METRICS_FILE = "{phase}_metrics.json"
WITHHELD = "withheld_"


def write_metrics(output_dir, phase, metrics):
    """Writes <output_dir>/<phase>_metrics.json (the latest evaluation of that split): BLEU-1…4, ROUGE-L, mean gates, and "withheld" (the
    same split evaluated with the descriptions removed) when descriptions are used."""
    if not output_dir:
        return
    record = {k: v for k, v in metrics.items() if not k.startswith(WITHHELD)}
    withheld = {k[len(WITHHELD):]: v for k, v in metrics.items() if k.startswith(WITHHELD)}
    if withheld:
        record["withheld"] = withheld
    path = Path(output_dir) / METRICS_FILE.format(phase=phase)
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def read_metrics(output_dir, phase="test"):
    return json.loads((Path(output_dir) / METRICS_FILE.format(phase=phase)).read_text(encoding="utf-8"))
