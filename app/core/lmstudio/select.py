"""Selection API under its own module name (the wizard imports it from here); see :mod:`.install`."""

from app.core.lmstudio.install import SelectPlan, execute_select, plan_select
from app.core.lmstudio.prefs import Selection, selected_for, selections

__all__ = ["SelectPlan", "Selection", "execute_select", "plan_select", "selected_for", "selections"]
