"""Models-from-code entry: MLflow runs this file at load time to build the image scorer."""

from clip_aesthetics.scoring.model import set_model

set_model()
