// hparams.cpp — pending
