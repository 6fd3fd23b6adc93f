"""Models-from-code entry: MLflow runs this file at load time to build the image scorer."""

import mlflow

from clip_aesthetics.scorer import AestheticScorer

mlflow.models.set_model(AestheticScorer())
