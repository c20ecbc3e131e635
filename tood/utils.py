"""Set up everything a config needs before it is built."""
import datetime

from mmengine.registry import DefaultScope


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every tood module so its registry entries exist, allow our
    checkpoints through torch's safe loader, and (optionally) make 'tood'
    the default registry scope.

    Args:
        init_default_scope: Make 'tood' the current default scope. When
            another scope is current, a new 'tood' scope instance is created
            so the other one is left untouched.
    """
    import tood.datasets  # noqa: F401
    import tood.engine  # noqa: F401
    import tood.evaluation  # noqa: F401
    import tood.models  # noqa: F401
    from tood.engine import register_safe_globals
    register_safe_globals()

    if not init_default_scope:
        return
    current = DefaultScope.get_current_instance()
    if current is not None and current.scope_name == 'tood':
        return
    name = 'tood'
    if DefaultScope.check_instance_created(name):
        name += datetime.datetime.now().strftime('-%Y%m%d-%H%M%S-%f')
    DefaultScope.get_instance(name, scope_name='tood')
