"""A technique by name: a script's own setup, or a combination's (utils/registry.py reads
the parts' calls from their scripts; here they become one setup, applied in stage order)."""

from utils import registry
from utils.techniques import adapters, optimizers, stages


def setup_of(name):
    """(canonical name, setup(run)) of a technique or a '+' combination; raises BadInput."""
    combination = registry.combination(name)
    if combination.is_script:
        return combination.name, registry.load_setup(combination.name)
    functions = {**vars(stages), **vars(optimizers), **vars(adapters)}

    def setup(run):
        for call in combination.calls:
            functions[call.function](run, *call.args, **dict(call.kwargs))

    return combination.name, setup
