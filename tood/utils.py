"""Set up the registries a config needs before it is built."""
import datetime

from mmengine.registry import DefaultScope


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import the model, dataset and metric modules so their registry
    entries exist, and (optionally) make 'tood' the default registry scope.

    ``tood.engine`` is not imported here: it sits above this module
    (``tools -> apis / engine -> models / datasets / evaluation``). The
    hooks and optimizer wrappers it registers are found anyway, because
    the tood registries name it in their ``locations`` and mmengine
    imports it the first time such a type is looked up. Nor is anything
    global set up for checkpoints; the entry points do that
    (``tood.engine.setup_checkpoint_io``).

    Args:
        init_default_scope: Make 'tood' the current default scope. When
            another scope is current, a new 'tood' scope instance is created
            so the other one is left untouched.
    """
    import tood.datasets  # noqa: F401
    import tood.evaluation  # noqa: F401
    import tood.models  # noqa: F401

    if not init_default_scope:
        return
    current = DefaultScope.get_current_instance()
    if current is not None and current.scope_name == 'tood':
        return
    name = 'tood'
    if DefaultScope.check_instance_created(name):
        name += datetime.datetime.now().strftime('-%Y%m%d-%H%M%S-%f')
    DefaultScope.get_instance(name, scope_name='tood')
