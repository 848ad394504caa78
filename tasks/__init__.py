"""Task registry. Importing this package registers every built-in task."""
from tasks.base import TASKS, Split, Task, TaskContext, register_task  # noqa: F401
from tasks import synthetic, digits, torchvision_tasks, folder_tasks  # noqa: F401
from tasks.sequences import SEQUENCES, Sequence, load_sequence  # noqa: F401
