"""Export: model + sample inputs -> verified artifact + manifest -> TorchServe archive."""
