"""HIL against Gazebo (gz-sim Harmonic, ROS 2 Jazzy) through gz_ros2_control.

    ros2 launch residual_control hil_gazebo.launch.py
    ros2 launch residual_control hil_gazebo.launch.py gui:=false namespace:=arm1

Starts:
  * gz sim with description/gazebo/arm_world.sdf (1 kHz physics);
  * ros_gz_bridge parameter_bridge with config/gazebo_bridge.yaml (/clock);
  * robot_state_publisher with the generated robot description: description/arm.urdf
    plus the <ros2_control> (gz_ros2_control/GazeboSimSystem, effort command,
    position/velocity state) and gz_ros2_control-system plugin blocks, injected
    at launch time by residual_control.hil.inject_ros2_control (one description);
  * ros_gz_sim create, spawning the arm from /robot_description;
  * controller_manager spawners: joint_state_broadcaster, then effort_controller
    (forward_command_controller, config/gazebo_controllers.yaml);
  * reference_publisher and perception;
  * residual_control.launch.py with use_sim_time:=true,
    commands -> /effort_controller/commands, joint_states -> /joint_states.

The gz-side pieces (gz sim, bridge, robot_state_publisher, controller_manager)
stay in the root namespace; `namespace` applies to the residual graph,
reference_publisher and perception, whose plant topics are remapped absolutely.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (AppendEnvironmentVariable, DeclareLaunchArgument, GroupAction,
                            IncludeLaunchDescription, OpaqueFunction, RegisterEventHandler)
from launch.event_handlers import OnProcessExit, OnShutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node, PushRosNamespace

from residual_control.hil import inject_ros2_control
from residual_control.launch_params import (NodeParams, common_joints, in_namespace, outer_namespace,
                                            truthy)

PACKAGE = 'residual_control'
WORLD_NAME = 'arm_world'          # <world name=...> in description/gazebo/arm_world.sdf
CONTROLLER_MANAGER = '/controller_manager'
EFFORT_CONTROLLER = 'effort_controller'
EFFORT_COMMAND_TOPIC = '/effort_controller/commands'
JOINT_STATES_TOPIC = '/joint_states'


def _launch_setup(context, *args, **kwargs):
    share = get_package_share_directory(PACKAGE)
    namespace = LaunchConfiguration('namespace').perform(context)
    params_file = LaunchConfiguration('params_file').perform(context)
    urdf_file = LaunchConfiguration('urdf_file').perform(context)
    controllers_file = LaunchConfiguration('controllers_file').perform(context)
    bridge_file = LaunchConfiguration('bridge_file').perform(context)
    world_file = LaunchConfiguration('world').perform(context)
    plant_file = LaunchConfiguration('plant_file').perform(context)
    gui = truthy(LaunchConfiguration('gui').perform(context))
    base_height = float(LaunchConfiguration('base_height').perform(context))
    robot_name = LaunchConfiguration('robot_name').perform(context)
    log_level = LaunchConfiguration('log_level').perform(context)
    ros_args = ['--log-level', log_level]

    with open(urdf_file, 'r', encoding='utf-8') as stream:
        robot_description = inject_ros2_control(
            stream.read(),
            common_joints(params_file),
            os.path.abspath(controllers_file),
            base_height=base_height,
        )

    # Launch arguments win over every entry of the params files, with or
    # without a namespace; generated files (also those of the gz-side nodes,
    # instead of launch_ros's temporary files) live in a private folder
    # removed at shutdown. See residual_control/launch_params.py.
    parameters = NodeParams(in_namespace(namespace, context.launch_configurations))
    # The gz side stays outside `namespace`: only an outer namespace applies to it.
    gz_side = bool(outer_namespace(context.launch_configurations))

    gz_args = f'-r -v 3 {world_file}' + ('' if gui else ' -s')
    gz_sim = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(
            get_package_share_directory('ros_gz_sim'), 'launch', 'gz_sim.launch.py')),
        launch_arguments={'gz_args': gz_args, 'on_exit_shutdown': 'true'}.items(),
    )
    bridge = Node(
        package='ros_gz_bridge',
        executable='parameter_bridge',
        name='clock_bridge',
        output='screen',
        parameters=parameters('clock_bridge', [], {'config_file': bridge_file}, gz_side),
    )
    robot_state_publisher = Node(
        package='robot_state_publisher',
        executable='robot_state_publisher',
        name='robot_state_publisher',
        output='screen',
        parameters=parameters('robot_state_publisher', [],
                              {'robot_description': robot_description, 'use_sim_time': True},
                              gz_side),
    )
    spawn_robot = Node(
        package='ros_gz_sim',
        executable='create',
        name='spawn_arm',
        output='screen',
        arguments=['-world', WORLD_NAME, '-topic', 'robot_description',
                   '-name', robot_name, '-x', '0', '-y', '0', '-z', '0'],
    )
    joint_state_broadcaster_spawner = Node(
        package='controller_manager',
        executable='spawner',
        output='screen',
        arguments=['joint_state_broadcaster', '--controller-manager', CONTROLLER_MANAGER],
    )
    effort_controller_spawner = Node(
        package='controller_manager',
        executable='spawner',
        output='screen',
        arguments=[EFFORT_CONTROLLER, '--controller-manager', CONTROLLER_MANAGER],
    )

    reference_file = LaunchConfiguration('reference_file').perform(context)
    plant_side = [
        Node(
            package=PACKAGE,
            executable='reference_publisher',
            name='reference_publisher',
            output='screen',
            parameters=parameters('reference_publisher', [params_file, reference_file],
                                  {'use_sim_time': True}),
            ros_arguments=ros_args,
        ),
        Node(
            package=PACKAGE,
            executable='perception',
            name='perception',
            output='screen',
            parameters=parameters('perception', [params_file],
                                  {'plant_file': plant_file, 'use_sim_time': True}),
            ros_arguments=ros_args,
        ),
    ]
    if namespace.strip('/'):
        plant_side.insert(0, PushRosNamespace(namespace))

    runtime = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            os.path.join(share, 'launch', 'residual_control.launch.py')),
        launch_arguments={
            'params_file': params_file,
            'namespace': namespace,
            'model_path': LaunchConfiguration('model_path').perform(context),
            'use_sim_time': 'true',
            'command_topic': EFFORT_COMMAND_TOPIC,
            'joint_states_topic': JOINT_STATES_TOPIC,
            'log_level': log_level,
        }.items(),
    )

    return [
        gz_sim,
        bridge,
        robot_state_publisher,
        spawn_robot,
        # Controllers once the model (and with it the controller_manager) exists.
        RegisterEventHandler(OnProcessExit(
            target_action=spawn_robot, on_exit=[joint_state_broadcaster_spawner])),
        RegisterEventHandler(OnProcessExit(
            target_action=joint_state_broadcaster_spawner,
            on_exit=[effort_controller_spawner])),
        GroupAction(plant_side),
        runtime,
        RegisterEventHandler(OnShutdown(
            on_shutdown=[OpaqueFunction(function=parameters.folder.cleanup)])),
    ]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument(
            'world', default_value=os.path.join(share, 'description', 'gazebo', 'arm_world.sdf'),
            description='gz-sim world SDF (its <world name> must be arm_world)'),
        DeclareLaunchArgument(
            'urdf_file', default_value=os.path.join(share, 'description', 'arm.urdf'),
            description='Plain robot URDF; the gz_ros2_control blocks are injected at launch'),
        DeclareLaunchArgument(
            'controllers_file',
            default_value=os.path.join(share, 'config', 'gazebo_controllers.yaml'),
            description='controller_manager YAML loaded by the gz_ros2_control plugin'),
        DeclareLaunchArgument(
            'bridge_file', default_value=os.path.join(share, 'config', 'gazebo_bridge.yaml'),
            description='ros_gz_bridge parameter_bridge config_file (/clock)'),
        DeclareLaunchArgument(
            'params_file',
            default_value=os.path.join(share, 'config', 'residual_control.yaml'),
            description='ROS 2 params file for the residual graph (also gives `joints`)'),
        DeclareLaunchArgument(
            'reference_file', default_value=os.path.join(share, 'config', 'reference.yaml'),
            description='Params file of reference_publisher'),
        DeclareLaunchArgument(
            'plant_file',
            default_value=os.path.join(share, 'config', 'plants', 'nominal.yaml'),
            description='Plant file for the perception node (payload estimate source)'),
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='Namespace of the residual graph, reference_publisher and perception'),
        DeclareLaunchArgument(
            'model_path', default_value='',
            description='ONNX residual policy; empty: the params file value'),
        DeclareLaunchArgument(
            'gui', default_value='true',
            description='Start the gz-sim GUI (false: server only, -s)'),
        DeclareLaunchArgument(
            'base_height', default_value='1.2',
            description='Height (m) of the arm base above the ground (world fixed joint)'),
        DeclareLaunchArgument(
            'robot_name', default_value='residual_arm',
            description='Name of the spawned gz-sim model'),
        DeclareLaunchArgument(
            'log_level', default_value='info',
            description='Log level of the residual_control nodes'),
        # Lets gz-sim resolve package://residual_control/... URIs, if any.
        AppendEnvironmentVariable('GZ_SIM_RESOURCE_PATH', os.path.dirname(share)),
        OpaqueFunction(function=_launch_setup),
    ])
