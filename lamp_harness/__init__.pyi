"""What type checkers see of ``lamp_harness``: the plugin API (``__init__.py`` resolves the same names lazily)."""

from lamp_harness.base.errors import (
    LampError as LampError,
)
from lamp_harness.base.errors import (
    lamp_error as lamp_error,
)
from lamp_harness.base.errors import (
    warn as warn,
)
from lamp_harness.base.io import (
    atomic_write_bytes as atomic_write_bytes,
)
from lamp_harness.base.io import (
    atomic_write_json as atomic_write_json,
)
from lamp_harness.base.io import (
    atomic_write_text as atomic_write_text,
)
from lamp_harness.base.io import (
    check_manifest as check_manifest,
)
from lamp_harness.base.io import (
    file_matches as file_matches,
)
from lamp_harness.base.io import (
    file_sha256 as file_sha256,
)
from lamp_harness.base.io import (
    folder_manifest as folder_manifest,
)
from lamp_harness.base.io import (
    lamp_home as lamp_home,
)
from lamp_harness.base.io import (
    stable_hash as stable_hash,
)
from lamp_harness.base.io import (
    staging_dir as staging_dir,
)
from lamp_harness.base.io import (
    writing as writing,
)
from lamp_harness.base.secrets import (
    MASK as MASK,
)
from lamp_harness.base.secrets import (
    is_secret_name as is_secret_name,
)
from lamp_harness.base.secrets import (
    redact as redact,
)
from lamp_harness.base.secrets import (
    redact_text as redact_text,
)
from lamp_harness.base.secrets import (
    remember as remember,
)
from lamp_harness.base.tokens import (
    HFTokenCounter as HFTokenCounter,
)
from lamp_harness.base.tokens import (
    WhitespaceTokenCounter as WhitespaceTokenCounter,
)
from lamp_harness.inputs import metrics as metrics
from lamp_harness.inputs.cache import (
    EmbeddingCache as EmbeddingCache,
)
from lamp_harness.inputs.cache import (
    encoder_identity as encoder_identity,
)
from lamp_harness.inputs.data import (
    DataSource as DataSource,
)
from lamp_harness.inputs.data import (
    SplitFiles as SplitFiles,
)
from lamp_harness.inputs.data import (
    check_scheme as check_scheme,
)
from lamp_harness.inputs.data import (
    check_split_name as check_split_name,
)
from lamp_harness.inputs.data import (
    split_file_names as split_file_names,
)
from lamp_harness.inputs.models import (
    ResolvedModel as ResolvedModel,
)
from lamp_harness.inputs.models import (
    loading_error as loading_error,
)
from lamp_harness.inputs.models import (
    model_cache_dir as model_cache_dir,
)
from lamp_harness.inputs.models import (
    preset_generator_args as preset_generator_args,
)
from lamp_harness.inputs.models import (
    preset_roles as preset_roles,
)
from lamp_harness.inputs.models import (
    pretrained_kwargs as pretrained_kwargs,
)
from lamp_harness.inputs.models import (
    resolve_model as resolve_model,
)
from lamp_harness.plugin.contracts import (
    Dataset as Dataset,
)
from lamp_harness.plugin.contracts import (
    DecodeMode as DecodeMode,
)
from lamp_harness.plugin.contracts import (
    Example as Example,
)
from lamp_harness.plugin.contracts import (
    ExampleScores as ExampleScores,
)
from lamp_harness.plugin.contracts import (
    Generation as Generation,
)
from lamp_harness.plugin.contracts import (
    GenerationRequest as GenerationRequest,
)
from lamp_harness.plugin.contracts import (
    Generator as Generator,
)
from lamp_harness.plugin.contracts import (
    JudgedMetric as JudgedMetric,
)
from lamp_harness.plugin.contracts import (
    JudgePrompt as JudgePrompt,
)
from lamp_harness.plugin.contracts import (
    MetricResult as MetricResult,
)
from lamp_harness.plugin.contracts import (
    Personalizer as Personalizer,
)
from lamp_harness.plugin.contracts import (
    Prediction as Prediction,
)
from lamp_harness.plugin.contracts import (
    ProfileItem as ProfileItem,
)
from lamp_harness.plugin.contracts import (
    Ranking as Ranking,
)
from lamp_harness.plugin.contracts import (
    RankQuery as RankQuery,
)
from lamp_harness.plugin.contracts import (
    Retriever as Retriever,
)
from lamp_harness.plugin.contracts import (
    RunContext as RunContext,
)
from lamp_harness.plugin.contracts import (
    Segment as Segment,
)
from lamp_harness.plugin.contracts import (
    SoftTokens as SoftTokens,
)
from lamp_harness.plugin.contracts import (
    Task as Task,
)
from lamp_harness.plugin.contracts import (
    TokenCounter as TokenCounter,
)
from lamp_harness.plugin.contracts import (
    Trainable as Trainable,
)
from lamp_harness.plugin.contracts import (
    TrainingBudget as TrainingBudget,
)
from lamp_harness.plugin.contracts import (
    prompt_options as prompt_options,
)
from lamp_harness.plugin.hookspecs import (
    hookimpl as hookimpl,
)
from lamp_harness.plugin.options import (
    NoOptions as NoOptions,
)
from lamp_harness.plugin.options import (
    OptionInfo as OptionInfo,
)
from lamp_harness.plugin.options import (
    Options as Options,
)
from lamp_harness.plugin.options import (
    batch_size_arg as batch_size_arg,
)
from lamp_harness.plugin.options import (
    bool_arg as bool_arg,
)
from lamp_harness.plugin.options import (
    check_args as check_args,
)
from lamp_harness.plugin.options import (
    float_arg as float_arg,
)
from lamp_harness.plugin.options import (
    int_arg as int_arg,
)
from lamp_harness.plugin.options import (
    option as option,
)
from lamp_harness.plugin.options import (
    prompt_budget as prompt_budget,
)
from lamp_harness.plugin.options import (
    reject_unknown_args as reject_unknown_args,
)
from lamp_harness.plugin.registry import (
    Component as Component,
)
from lamp_harness.plugin.registry import (
    Registry as Registry,
)
from lamp_harness.plugin.trainable import (
    GeneratorFineTuning as GeneratorFineTuning,
)
from lamp_harness.run.cells import (
    CellSpec as CellSpec,
)
from lamp_harness.run.cells import (
    RunInfo as RunInfo,
)
from lamp_harness.run.records import (
    CellRecord as CellRecord,
)
from lamp_harness.run.records import (
    CellResult as CellResult,
)
from lamp_harness.run.records import (
    Timing as Timing,
)

__version__: str
__all__: list[str]
