"""The training core: device and precision, models, optimizer and schedule, data on the device,
`evaluate`, the loop (`fit`, `train_epoch`) and its hooks, stopping, collectives, metrics. It
never imports the run launcher, the queue, the views, the CLI or Textual."""
