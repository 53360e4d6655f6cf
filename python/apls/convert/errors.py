"""The one exception conversion raises."""


class ConvertError(ValueError):
    """A checkpoint that cannot be converted: missing or corrupt files, an unsupported
    architecture or tokenizer, shapes that disagree with config.json. The message names the
    file, tensor or setting at fault."""
