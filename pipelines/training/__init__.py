"""Training, one concept a module: `loop` (the Keras loop every runner uses), `data` (decoding, class
weights, oversampling), `metrics`, `early_stopping` (patience), `checkpoint` (what an epoch saves),
`ray_train` (the loop under Ray Train) and `tf_backend` (Ray Train's TensorFlow set-up)."""
