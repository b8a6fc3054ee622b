"""Trained models on new images: prediction (`predict`) and export (`export`). Any trained model comes in through
`reslab.models.trained.load_trained` as a `reslab.weights.trained.TrainedModel`."""
