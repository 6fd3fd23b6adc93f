"""Models-from-code entry: MLflow runs this file at load time to build the image scorer."""

from clip_aesthetics.scorer import set_model

set_model()
