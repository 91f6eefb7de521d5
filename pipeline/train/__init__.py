"""Training plumbing shared by SFT and RL: DeepSpeed engine setup, sequence packing, SFT loop."""
