"""YAML from users, read safely: no aliases, and a size bound."""

import yaml

MAX_BYTES = 1 << 20  # Kubernetes holds a ConfigMap or a Secret to 1 MiB


class _NoAliasLoader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
    """yaml.SafeLoader without aliases: a ConfigMap or a Secret needs none, and 398 bytes of nested
    ones (a "billion laughs") expand to gigabytes."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not accepted here",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)


def load(text: str):
    """One YAML document; raises yaml.YAMLError (aliases) or ValueError (over MAX_BYTES)."""
    if len(text) > MAX_BYTES:
        raise ValueError(f"{len(text)} characters; a ConfigMap or Secret holds at most {MAX_BYTES} bytes")
    return yaml.load(text, Loader=_NoAliasLoader)  # nosec: a SafeLoader


def load_all(text: str):
    """Every YAML document, as `load` reads one."""
    if len(text) > MAX_BYTES:
        raise ValueError(f"{len(text)} characters; a ConfigMap or Secret holds at most {MAX_BYTES} bytes")
    return list(yaml.load_all(text, Loader=_NoAliasLoader))  # nosec: a SafeLoader
