"""Runtime graph of residual_control: base_controller, residual_policy, residual_mixer.

    ros2 launch residual_control residual_control.launch.py
    ros2 launch residual_control residual_control.launch.py \
        namespace:=arm1 command_topic:=/effort_controller/commands use_sim_time:=true

All three nodes use relative topic names, so ``namespace`` moves the whole
graph; ``command_topic`` and ``joint_states_topic`` remap the two topics that
connect it to a plant (a simulator or ros2_control). The graph does not
include a plant, a reference or a perception source: see sim_demo.launch.py
(MuJoCo) and hil_gazebo.launch.py (gz-sim + gz_ros2_control).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnShutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node, PushRosNamespace

from residual_control.launch_params import NodeParams, in_namespace, truthy

PACKAGE = 'residual_control'


def _launch_setup(context, *args, **kwargs):
    namespace = LaunchConfiguration('namespace').perform(context)
    params_file = LaunchConfiguration('params_file').perform(context)
    model_path = LaunchConfiguration('model_path').perform(context)
    use_sim_time = truthy(LaunchConfiguration('use_sim_time').perform(context))
    command_topic = LaunchConfiguration('command_topic').perform(context)
    joint_states_topic = LaunchConfiguration('joint_states_topic').perform(context)
    log_level = LaunchConfiguration('log_level').perform(context)

    common = {'use_sim_time': use_sim_time}
    # Only override model_path when given, so a params file's own value wins
    # over the launch default (empty = the package's models/residual_bc.onnx).
    policy_overrides = dict(common)
    if model_path:
        policy_overrides['model_path'] = model_path
    ros_args = ['--log-level', log_level]

    # Launch arguments win over every entry of the params file, with or
    # without a namespace (an override passed as a dict would lose to a
    # `residual_policy:` entry); generated files live in a private folder
    # removed at shutdown. See residual_control/launch_params.py.
    parameters = NodeParams(in_namespace(namespace, context.launch_configurations))

    base_controller = Node(
        package=PACKAGE,
        executable='base_controller',
        name='base_controller',
        output='screen',
        parameters=parameters('base_controller', [params_file], common),
        remappings=[('joint_states', joint_states_topic)],
        ros_arguments=ros_args,
    )
    residual_policy = Node(
        package=PACKAGE,
        executable='residual_policy',
        name='residual_policy',
        output='screen',
        parameters=parameters('residual_policy', [params_file], policy_overrides),
        remappings=[('joint_states', joint_states_topic)],
        ros_arguments=ros_args,
    )
    residual_mixer = Node(
        package=PACKAGE,
        executable='residual_mixer',
        name='residual_mixer',
        output='screen',
        parameters=parameters('residual_mixer', [params_file], common),
        # joint_states: the state base_stale_behavior damp brings to rest
        remappings=[('commands', command_topic), ('joint_states', joint_states_topic)],
        ros_arguments=ros_args,
    )
    actions = [base_controller, residual_policy, residual_mixer]
    if namespace.strip('/'):
        actions.insert(0, PushRosNamespace(namespace))
    cleanup = RegisterEventHandler(OnShutdown(
        on_shutdown=[OpaqueFunction(function=parameters.folder.cleanup)]))
    return [GroupAction(actions), cleanup]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument(
            'params_file',
            default_value=os.path.join(share, 'config', 'residual_control.yaml'),
            description='ROS 2 params file for the three nodes'),
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='Namespace pushed onto the three nodes (empty: none)'),
        DeclareLaunchArgument(
            'model_path', default_value='',
            description='ONNX residual policy; empty: the params file value '
                        '(empty there: the package models/residual_bc.onnx)'),
        DeclareLaunchArgument(
            'use_sim_time', default_value='false',
            description='Use /clock (true with a simulator or gz-sim)'),
        DeclareLaunchArgument(
            'command_topic', default_value='commands',
            description='Remap of the mixer output `commands` '
                        '(std_msgs/Float64MultiArray), e.g. /effort_controller/commands'),
        DeclareLaunchArgument(
            'joint_states_topic', default_value='joint_states',
            description='Remap of `joint_states` for base_controller, residual_policy and residual_mixer'),
        DeclareLaunchArgument(
            'log_level', default_value='info',
            description='Log level of the three nodes (debug, info, warn, error)'),
        OpaqueFunction(function=_launch_setup),
    ])
