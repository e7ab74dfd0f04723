"""stacklab's training core: Keras models, data, training, tuning, evaluation.

Pure ML: nothing here imports web, SQL or queue code.
"""

import os

# TensorFlow's C++ start-up chatter (oneDNN, CPU feature notices) hides real output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
