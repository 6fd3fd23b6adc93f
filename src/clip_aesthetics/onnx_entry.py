"""Models-from-code entry of an exported model: MLflow runs this file at load time to build the ONNX scorer."""

from clip_aesthetics.scoring.onnx_model import set_model

set_model()
