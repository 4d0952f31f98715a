"""Training objectives: language modelling now; ITC, ITM, ITG, InfoNCE and MLM join as their designs do."""
