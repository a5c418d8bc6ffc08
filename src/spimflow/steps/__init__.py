"""Pure algorithmic steps: arrays and a pydantic parameter model in, arrays or tables out."""
