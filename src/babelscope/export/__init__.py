"""Hub-ready exports: a model directory and an SAE directory with their cards, and Neuronpedia-style feature
JSON from a feature store (`babelscope export`)."""
